-- Counts of tasks by state (CountTasks, the dashboard's tallies) per
-- namespace and template, read from this index alone: one small entry per
-- task instead of its row. Unfiltered counts use tasks_state_id.

-- +goose Up
CREATE INDEX tasks_namespace_name_state ON tasks (namespace, name, state);

-- +goose Down
DROP INDEX tasks_namespace_name_state;
