-- Trust on first use: the key each target endpoint presented the first time Sekisho dialled
-- it (an RDP server's TLS certificate, a console's SSH host key). Shared by every instance,
-- so a changed key is refused whichever instance dials next.
-- Keep in step with ../sqlite/0004_pins.sql.
CREATE TABLE pins (
    kind        TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    pinned_at   TIMESTAMPTZ NOT NULL,
    instance_id TEXT NOT NULL,
    target      TEXT,
    PRIMARY KEY (kind, endpoint)
);
