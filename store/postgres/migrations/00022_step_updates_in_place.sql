-- Step updates PostgreSQL can apply in place. A step's row changes twice
-- per attempt (to in_progress, then to its outcome), and the partial index
-- steps_in_progress, whose WHERE reads the state, made every such UPDATE
-- one that PostgreSQL cannot apply as a heap-only tuple (HOT): each wrote a
-- new entry into every index of steps. Without it, and with room left on
-- each page (fillfactor 85) for the new version to sit beside the old, a
-- step update writes the heap alone (tasker bench linear4 at concurrency
-- 500 on one coordinator: about 10% more steps per second).
--
-- The index served one read that must not scan history: the lease claim's
-- search for tasks in error whose steps are still running. tasks.draining
-- now marks those tasks (kept by the statements that change a task's or a
-- step's state, and set here for the tasks already in that case), and the
-- partial index tasks_draining holds just them. Task updates always change
-- an indexed column (state), so marking them costs no HOT update.
--
-- Only pages written after the fillfactor change keep the room; older
-- ones gain it as they are rewritten.

-- +goose Up
ALTER TABLE tasks ADD COLUMN draining BOOLEAN NOT NULL DEFAULT false;
UPDATE tasks SET draining = true
	WHERE state = 'error' AND id IN (SELECT task_id FROM steps WHERE state = 'in_progress');
CREATE INDEX tasks_draining ON tasks (id) WHERE state = 'error' AND draining;
DROP INDEX steps_in_progress;
ALTER TABLE steps SET (fillfactor = 85);

-- +goose Down
ALTER TABLE steps RESET (fillfactor);
CREATE INDEX steps_in_progress ON steps (task_id) WHERE state = 'in_progress';
DROP INDEX tasks_draining;
ALTER TABLE tasks DROP COLUMN draining;
