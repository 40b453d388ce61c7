-- A task's priority (1 lowest to 4 highest): when executor slots are short
-- its steps are dispatched before those of lower priority. 0 reads as the
-- default, so rows written before this column behave as they did.

-- +goose Up
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE tasks DROP COLUMN priority;
