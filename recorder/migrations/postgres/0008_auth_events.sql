-- Failed logons, successful logons, matrix card passes and logouts, as each instance sees
-- them, so the instances of one catalogue share one failed-logon throttle and one record of
-- card passes: guessing across instances behind a load balancer is counted once, and a card
-- passed on one instance counts on the others. Kept only as long as a lockout or a card pass
-- can matter (auth.failure_window, auth.lockout, auth.second_factor_ttl).
-- Keep in step with ../sqlite/0008_auth_events.sql.
CREATE TABLE auth_events (
    id          TEXT PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    instance_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    source      TEXT
);
CREATE INDEX auth_events_at ON auth_events (at);
