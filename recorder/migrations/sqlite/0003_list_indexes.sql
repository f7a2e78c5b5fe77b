-- Filtered session lists order by (started_at DESC, id DESC) too: include id in the
-- per-column indexes so no sort step is needed for ties.
DROP INDEX sessions_user_started;
DROP INDEX sessions_contractor_started;
DROP INDEX sessions_target_started;
DROP INDEX decisions_user_at;
DROP INDEX decisions_rule_at;
CREATE INDEX sessions_user_started ON sessions (user_name, started_at DESC, id DESC);
CREATE INDEX sessions_contractor_started ON sessions (contractor, started_at DESC, id DESC);
CREATE INDEX sessions_target_started ON sessions (target, started_at DESC, id DESC);
CREATE INDEX decisions_user_at ON decisions (user_name, at DESC, id DESC);
CREATE INDEX decisions_rule_at ON decisions (rule, at DESC, id DESC);
