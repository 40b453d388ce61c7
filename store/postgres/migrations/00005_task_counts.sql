-- Counts of tasks by state (CountTasks, the dashboard's tallies) per
-- namespace and template, by an index-only scan of this index: one small
-- entry per task instead of its row. Unfiltered counts use tasks_state_id.
-- The index is built inside the migration's transaction, which holds
-- writes to tasks for as long as the build takes.

-- +goose Up
CREATE INDEX tasks_namespace_name_state ON tasks (namespace, name, state);

-- +goose Down
DROP INDEX tasks_namespace_name_state;
