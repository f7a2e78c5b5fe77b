-- The review dashboard lists the policy events of a period (a few kinds of session event,
-- newest first) without reading every session's events.
-- Keep in step with ../postgres/0009_policy_event_index.sql.
CREATE INDEX session_events_kind_at ON session_events (kind, at);
