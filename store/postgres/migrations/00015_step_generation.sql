-- A step's generation counts its reruns: 0 at creation, one more each time
-- an operator reruns the step (or a step upstream of it). Every attempt of
-- one run shares it, so task id, step id and generation make the
-- idempotency key a handler passes on for its own side effects, and it is
-- stored so the key survives restarts. A column with a constant default is
-- added without rewriting the table.

-- +goose Up
ALTER TABLE steps ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE steps DROP COLUMN generation;
