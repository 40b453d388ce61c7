-- A debounced task: repeated creates with one template and debounce key
-- collapse into one pending task until it starts. debounce_key names the
-- key (NULL for other tasks) and stays for the task's life, so reads show
-- it; debounce_open is 1 while creates with the key still fold into this
-- task. The partial unique index holds at most one open task per template
-- and key, which is what lets concurrent creates agree on one task; a
-- create that finds the open task already started (no longer pending, or
-- its run_at passed) sets debounce_open to 0 in the same transaction as
-- the insert of its successor.

-- +goose Up
ALTER TABLE tasks ADD COLUMN debounce_key TEXT;
ALTER TABLE tasks ADD COLUMN debounce_open INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX tasks_debounce_open ON tasks (namespace, name, debounce_key) WHERE debounce_open;

-- +goose Down
DROP INDEX tasks_debounce_open;
ALTER TABLE tasks DROP COLUMN debounce_open;
ALTER TABLE tasks DROP COLUMN debounce_key;
