-- Child tasks: a step declared with `task:` runs a task of another
-- template, its child. The child names its parent task and the parent's
-- step, so a read of the child shows where it came from and a read of the
-- parent can find its children. Both are NULL for every other task. The
-- index serves the reads by parent.

-- +goose Up
ALTER TABLE tasks ADD COLUMN parent_task_id TEXT;
ALTER TABLE tasks ADD COLUMN parent_step_id TEXT;
CREATE INDEX tasks_parent ON tasks (parent_task_id, parent_step_id) WHERE parent_task_id IS NOT NULL;

-- +goose Down
DROP INDEX tasks_parent;
ALTER TABLE tasks DROP COLUMN parent_step_id;
ALTER TABLE tasks DROP COLUMN parent_task_id;
