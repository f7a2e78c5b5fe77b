-- Security staff's reviews of denials (decisions) and of policy events inside sessions: a
-- disposition (expected, mistake, incident) and a comment. A subject may be reviewed again;
-- the newest review stands and the older ones stay as history. Each review is an audit event
-- and a ledger row too.
-- Keep in step with ../sqlite/0007_reviews.sql.
CREATE TABLE reviews (
    id           TEXT PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    disposition  TEXT NOT NULL,
    comment      TEXT,
    reviewer     TEXT NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    instance_id  TEXT NOT NULL
);
CREATE INDEX reviews_subject ON reviews (subject_kind, subject_id, at);
