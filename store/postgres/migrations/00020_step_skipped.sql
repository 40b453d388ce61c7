-- Decision points: a step on a branch its decision did not take ends in
-- the state 'skipped'. Tasks are never skipped, so only steps' CHECK
-- widens. The new constraint is added NOT VALID and validated apart, so
-- the scan of existing rows holds no lock that blocks writes to steps.

-- +goose Up
ALTER TABLE steps DROP CONSTRAINT steps_state_check;
ALTER TABLE steps ADD CONSTRAINT steps_state_check
    CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually', 'skipped')) NOT VALID;
ALTER TABLE steps VALIDATE CONSTRAINT steps_state_check;

-- +goose Down
-- Fails while any step is skipped: an older build cannot read that state.
ALTER TABLE steps DROP CONSTRAINT steps_state_check;
ALTER TABLE steps ADD CONSTRAINT steps_state_check
    CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually'));
