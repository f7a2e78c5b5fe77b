-- Instances that write to this catalogue, and when each was last seen alive (heartbeat).
-- A live console of an instance whose heartbeat is stale no longer allows RDP hops.
-- Keep in step with ../sqlite/0002_instances.sql.
CREATE TABLE instances (
    instance_id TEXT PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL
);
