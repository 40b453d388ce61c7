-- Takeover between coordinators and an auditable fence.
--
-- leases.address: where the lease holder serves its peers, so a
-- coordinator refused a task can tell the caller who owns it.
-- transitions.lease_token: the lease that wrote each transition (0: none).
-- steps_in_progress: the steps still running, however few, so a claim can
-- find a task that failed while a step was in flight without reading
-- every finished task. Queries must repeat its WHERE word for word.

-- +goose Up
ALTER TABLE leases ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE transitions ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
CREATE INDEX steps_in_progress ON steps (task_id) WHERE state = 'in_progress';

-- +goose Down
DROP INDEX steps_in_progress;
ALTER TABLE transitions DROP COLUMN lease_token;
ALTER TABLE leases DROP COLUMN address;
