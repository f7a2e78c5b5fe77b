-- Staff watching live sessions in the web UI. A watcher is present from joined_at while it
-- beats (last_seen, refreshed by each picture its page fetches) and until left_at. The
-- instance running the session reads the present watchers to tell the contractor, record
-- each join and leave, and (for supervised targets) hold input while nobody watches.
-- Keep in step with ../sqlite/0010_watchers.sql.
CREATE TABLE watchers (
    id          TEXT PRIMARY KEY NOT NULL,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    viewer      TEXT NOT NULL,
    role        TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    joined_at   TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL,
    left_at     TIMESTAMPTZ
);
CREATE INDEX watchers_present ON watchers (last_seen) WHERE left_at IS NULL;
CREATE INDEX watchers_session ON watchers (session_id);
