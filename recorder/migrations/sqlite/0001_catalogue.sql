-- Sekisho audit catalogue, SQLite flavour.
-- Ids are UUIDv7 text (unique across instances that might later share a PostgreSQL).
-- Timestamps are fixed-width UTC RFC 3339 text ('2026-11-25T19:37:23.123456Z'), so text
-- order is time order. Keep in step with ../postgres/0001_catalogue.sql.

-- Every allow/deny decision.
CREATE TABLE decisions (
    id          TEXT PRIMARY KEY NOT NULL,
    at          TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    source      TEXT NOT NULL,
    target      TEXT,
    user_name   TEXT,
    contractor  TEXT,
    verdict     TEXT NOT NULL CHECK (verdict IN ('allow', 'deny')),
    rule        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    session_id  TEXT
);
CREATE INDEX decisions_at ON decisions (at DESC, id DESC);
CREATE INDEX decisions_verdict_at ON decisions (verdict, at DESC, id DESC);
CREATE INDEX decisions_user_at ON decisions (user_name, at DESC);
CREATE INDEX decisions_rule_at ON decisions (rule, at DESC);

-- Every session that was allowed to start.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    instance_id     TEXT NOT NULL,
    protocol        TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    contractor      TEXT NOT NULL,
    source          TEXT NOT NULL,
    target          TEXT NOT NULL,
    access_path     TEXT NOT NULL,
    console_session TEXT,
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    outcome         TEXT NOT NULL,
    recording       TEXT,
    recording_state TEXT,
    recording_size  INTEGER,
    recording_hash  TEXT,
    detail          TEXT
);
CREATE INDEX sessions_started ON sessions (started_at DESC, id DESC);
CREATE INDEX sessions_user_started ON sessions (user_name, started_at DESC);
CREATE INDEX sessions_contractor_started ON sessions (contractor, started_at DESC);
CREATE INDEX sessions_target_started ON sessions (target, started_at DESC);
CREATE INDEX sessions_live ON sessions (instance_id, protocol) WHERE ended_at IS NULL;
CREATE INDEX sessions_console ON sessions (console_session) WHERE console_session IS NOT NULL;

-- Policy and lifecycle events inside a session.
CREATE TABLE session_events (
    id          TEXT PRIMARY KEY NOT NULL,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    instance_id TEXT NOT NULL,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX session_events_session ON session_events (session_id, at);

-- "Emergency stop" requests; instance_id is the instance running the session (it must act).
CREATE TABLE kill_requests (
    id           TEXT PRIMARY KEY NOT NULL,
    session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    instance_id  TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    handled_at   TEXT
);
CREATE INDEX kill_requests_pending ON kill_requests (instance_id) WHERE handled_at IS NULL;
CREATE INDEX kill_requests_session ON kill_requests (session_id);

-- Catalogue-level events (storage failures, sealing, retention).
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY NOT NULL,
    at          TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT,
    session_id  TEXT
);
CREATE INDEX audit_events_at ON audit_events (at DESC, id DESC);
CREATE INDEX audit_events_kind_at ON audit_events (kind, at DESC);
