-- Terminal sessions (SSH, serial console) join the typed-text index (issue #18): besides the
-- lines typed in graphical sessions, the index holds the commands run in terminal sessions
-- (kind 'typed', read from the keys and their echo; never what was typed with echo off) and
-- the text lines they showed (kind 'screen'). Rows written before this migration are typed
-- text of graphical sessions, hence the default.
-- Keep in step with ../postgres/0012_typed_text_kind.sql.
ALTER TABLE typed_text ADD COLUMN kind TEXT NOT NULL DEFAULT 'typed';
