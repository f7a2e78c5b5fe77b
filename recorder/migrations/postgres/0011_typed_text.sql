-- Typed text of graphical sessions (RDP, VNC): one row per line the contractor typed, read from
-- the sealed recording by the instance that ran the session, for the auditors' search.
-- at_us is the time of the line's first key, in microseconds since the recording's start
-- (the player's clock). folded is the text case-folded by Sekisho (Unicode lower case), so
-- both backends search it the same way. Lines typed on a logon screen are never written.
-- Keep in step with ../sqlite/0011_typed_text.sql.
CREATE TABLE typed_text (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    at_us      BIGINT NOT NULL,
    text       TEXT NOT NULL,
    folded     TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
