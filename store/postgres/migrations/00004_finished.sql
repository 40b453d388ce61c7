-- Analytics reads the tasks of one template that finished in a time
-- window, as in the SQLite driver's 00004. tasks_finished holds only
-- finished tasks, by template and by updated_at (when a task last changed
-- state, which for a finished task is when it finished), so that read walks
-- just the window's entries, however many finished tasks are stored outside
-- it, and never the active ones. id ends the key so ties come back in one
-- order without a sort. Queries must repeat its WHERE word for word.
--
-- The index is built inside the migration's transaction, which holds writes
-- to tasks for as long as the build takes (it reads the tasks table once).

-- +goose Up
CREATE INDEX tasks_finished ON tasks (namespace, name, updated_at, id)
    WHERE state IN ('complete', 'error', 'cancelled', 'resolved_manually');

-- +goose Down
DROP INDEX tasks_finished;
