-- Signals sent to tasks (SignalTask), as in the SQLite driver. A signal
-- waits here, unconsumed, until a step waiting for its name consumes it;
-- consumed_step and consumed_attempt then name that step attempt, written
-- in the same transaction as the step's completion, so a signal is
-- consumed once.

-- +goose Up
CREATE TABLE signals (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    task_id          TEXT COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name             TEXT COLLATE "C" NOT NULL,
    payload          TEXT,
    received_at      BIGINT           NOT NULL,
    consumed_step    TEXT COLLATE "C",
    consumed_attempt INTEGER,
    consumed_at      BIGINT
);
CREATE INDEX signals_task ON signals (task_id, received_at, id);

-- +goose StatementBegin
-- tasker_signal_refused explains why a signal was not stored or consumed:
-- its task does not exist (TK404), or its id is stored already, consumed
-- or for another task (TK409).
CREATE FUNCTION tasker_signal_refused(p_id TEXT, p_task_id TEXT)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    cur_task TEXT;
    cur_step TEXT;
BEGIN
    PERFORM 1 FROM tasks WHERE id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such task' USING ERRCODE = 'TK404';
    END IF;
    SELECT task_id, consumed_step INTO cur_task, cur_step FROM signals WHERE id = p_id;
    IF cur_task IS DISTINCT FROM p_task_id THEN
        RAISE EXCEPTION 'signal id is stored for task %', cur_task USING ERRCODE = 'TK409';
    END IF;
    IF cur_step IS NOT NULL THEN
        RAISE EXCEPTION 'signal is consumed already, by step %', cur_step USING ERRCODE = 'TK409';
    END IF;
    RAISE EXCEPTION 'signal id is stored already' USING ERRCODE = 'TK409';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tasker_signal_refused(TEXT, TEXT);
DROP INDEX signals_task;
DROP TABLE signals;
