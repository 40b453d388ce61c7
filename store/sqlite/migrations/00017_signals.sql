-- Signals sent to tasks (SignalTask). A signal waits here, unconsumed,
-- until a step waiting for its name consumes it; consumed_step and
-- consumed_attempt then name that step attempt, written in the same
-- transaction as the step's completion, so a signal is consumed once.

-- +goose Up
CREATE TABLE signals (
    id               TEXT    PRIMARY KEY,
    task_id          TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    payload          TEXT,
    received_at      INTEGER NOT NULL,
    consumed_step    TEXT,
    consumed_attempt INTEGER,
    consumed_at      INTEGER
);
CREATE INDEX signals_task ON signals (task_id, received_at, id);

-- +goose Down
DROP INDEX signals_task;
DROP TABLE signals;
