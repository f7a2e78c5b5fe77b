-- Decision reasons as templates: the reason's template id and parameters as JSON
-- ({"id": "rdp.vdi-to-vm", "params": {"target": "web01"}}), beside the English sentence in
-- `reason`, so the web UI renders the reason in the reader's language. NULL for decisions
-- written before this column, and for refusals a proxy words itself (read by their rule).
ALTER TABLE decisions ADD COLUMN explanation TEXT;
