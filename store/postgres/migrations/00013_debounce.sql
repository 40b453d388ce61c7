-- A debounced task: repeated creates with one template and debounce key
-- collapse into one pending task until it starts. debounce_key names the
-- key (NULL for other tasks) and stays for the task's life, so reads show
-- it; debounce_open is true while creates with the key still fold into
-- this task. The partial unique index holds at most one open task per
-- template and key, which is what lets concurrent creates (on any
-- coordinator) agree on one task; a create that finds the open task
-- already started (no longer pending, or its run_at passed) closes it in
-- the same transaction as the insert of its successor. Columns with a
-- constant default are added without rewriting the table.

-- +goose Up
ALTER TABLE tasks ADD COLUMN debounce_key TEXT COLLATE "C";
ALTER TABLE tasks ADD COLUMN debounce_open BOOLEAN NOT NULL DEFAULT false;
CREATE UNIQUE INDEX tasks_debounce_open ON tasks (namespace, name, debounce_key) WHERE debounce_open;

-- tasker_debounce_refused raises why a debounce update of a task matched
-- no row: TK404 for a task that does not exist, TK409 (store.ErrConflict)
-- for one that started, was closed, or moved its start time meanwhile. It
-- runs only on the refusal path, inside the refused statement, so the
-- pipeline stops there.

-- +goose StatementBegin
CREATE FUNCTION tasker_debounce_refused(p_task_id TEXT, p_expect_run_at BIGINT, p_at BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    cur_state  TEXT;
    cur_open   BOOLEAN;
    cur_run_at BIGINT;
BEGIN
    SELECT state, debounce_open, run_at INTO cur_state, cur_open, cur_run_at FROM tasks WHERE id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such task' USING ERRCODE = 'TK404';
    END IF;
    IF cur_state <> 'pending' THEN
        RAISE EXCEPTION 'task is %, no longer pending: it started', cur_state USING ERRCODE = 'TK409';
    END IF;
    IF NOT cur_open THEN
        RAISE EXCEPTION 'task is no longer open to debounced creates' USING ERRCODE = 'TK409';
    END IF;
    IF cur_run_at IS DISTINCT FROM p_expect_run_at THEN
        RAISE EXCEPTION 'task start time is % (unix ns), not %', cur_run_at, p_expect_run_at USING ERRCODE = 'TK409';
    END IF;
    RAISE EXCEPTION 'task start time % (unix ns) is not after %: it started', cur_run_at, p_at USING ERRCODE = 'TK409';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tasker_debounce_refused(TEXT, BIGINT, BIGINT);
DROP INDEX tasks_debounce_open;
ALTER TABLE tasks DROP COLUMN debounce_open;
ALTER TABLE tasks DROP COLUMN debounce_key;
