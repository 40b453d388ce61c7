-- A task created with a delay waits, pending, until run_at (unix
-- nanoseconds); NULL for a task that starts at once. Read with the task, so
-- a restarted coordinator arms the task's timer from it. A nullable column
-- without a default is added without rewriting the table.

-- +goose Up
ALTER TABLE tasks ADD COLUMN run_at BIGINT;

-- +goose Down
ALTER TABLE tasks DROP COLUMN run_at;
