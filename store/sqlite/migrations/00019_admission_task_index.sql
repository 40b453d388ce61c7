-- A task's admission entries are deleted by task id when it ends.

-- +goose Up
CREATE INDEX admission_entries_task ON admission_entries (task_id);

-- +goose Down
DROP INDEX admission_entries_task;
