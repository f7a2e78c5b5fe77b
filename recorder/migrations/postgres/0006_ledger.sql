-- The ledger: an append-only, hash-chained list of sealed and deleted recordings (and
-- reviews), across every instance, with signed checkpoints of its head (recorder::ledger).
-- Keep in step with ../sqlite/0006_ledger.sql.
CREATE TABLE ledger (
    seq            BIGINT PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL,
    instance_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    session_id     TEXT,
    location       TEXT,
    recording_hash TEXT,
    recording_size BIGINT,
    started_at     TIMESTAMPTZ,
    ended_at       TIMESTAMPTZ,
    signer         TEXT,
    detail         TEXT,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX ledger_session ON ledger (session_id);

-- The head of the chain, one row: appending updates it first, which serialises appenders
-- (a row lock on PostgreSQL, the write lock on SQLite).
CREATE TABLE ledger_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO ledger_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE ledger_checkpoints (
    seq         BIGINT NOT NULL,
    head_hash   TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    instance_id TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL,
    PRIMARY KEY (instance_id, at)
);

-- The recording-signing public key (hex) of each instance, so a ledger row names its signer.
ALTER TABLE instances ADD COLUMN public_key TEXT;
