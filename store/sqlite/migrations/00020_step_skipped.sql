-- Decision points: a step on a branch its decision did not take ends in
-- the state 'skipped'. Tasks are never skipped, so only steps' CHECK
-- widens. SQLite cannot alter a CHECK constraint, so the table is rebuilt
-- (a copy of every step row, once, at upgrade) with its indexes. Nothing
-- references steps, so dropping the old table checks no foreign key.

-- +goose Up
CREATE TABLE steps_new (
    id              TEXT    NOT NULL PRIMARY KEY,
    task_id         TEXT    NOT NULL REFERENCES tasks (id),
    name            TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    handler         TEXT    NOT NULL,
    depends_on      TEXT    NOT NULL DEFAULT '[]',
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually', 'skipped')),
    attempts        INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    retryable       INTEGER NOT NULL,
    skippable       INTEGER NOT NULL,
    results         TEXT,
    error_message   TEXT,
    error_class     TEXT,
    error_retryable INTEGER,
    next_retry_at   INTEGER,
    updated_at      INTEGER NOT NULL,
    generation      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (task_id, name)
) WITHOUT ROWID;
INSERT INTO steps_new (id, task_id, name, position, handler, depends_on, state, attempts, max_attempts, retryable,
                       skippable, results, error_message, error_class, error_retryable, next_retry_at, updated_at, generation)
SELECT id, task_id, name, position, handler, depends_on, state, attempts, max_attempts, retryable,
       skippable, results, error_message, error_class, error_retryable, next_retry_at, updated_at, generation
FROM steps;
DROP TABLE steps;
ALTER TABLE steps_new RENAME TO steps;
CREATE INDEX steps_task_id_position ON steps (task_id, position);
CREATE INDEX steps_in_progress ON steps (task_id) WHERE state = 'in_progress';

-- +goose Down
-- Fails while any step is skipped: an older build cannot read that state.
CREATE TABLE steps_old (
    id              TEXT    NOT NULL PRIMARY KEY,
    task_id         TEXT    NOT NULL REFERENCES tasks (id),
    name            TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    handler         TEXT    NOT NULL,
    depends_on      TEXT    NOT NULL DEFAULT '[]',
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    attempts        INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    retryable       INTEGER NOT NULL,
    skippable       INTEGER NOT NULL,
    results         TEXT,
    error_message   TEXT,
    error_class     TEXT,
    error_retryable INTEGER,
    next_retry_at   INTEGER,
    updated_at      INTEGER NOT NULL,
    generation      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (task_id, name)
) WITHOUT ROWID;
INSERT INTO steps_old (id, task_id, name, position, handler, depends_on, state, attempts, max_attempts, retryable,
                       skippable, results, error_message, error_class, error_retryable, next_retry_at, updated_at, generation)
SELECT id, task_id, name, position, handler, depends_on, state, attempts, max_attempts, retryable,
       skippable, results, error_message, error_class, error_retryable, next_retry_at, updated_at, generation
FROM steps;
DROP TABLE steps;
ALTER TABLE steps_old RENAME TO steps;
CREATE INDEX steps_task_id_position ON steps (task_id, position);
CREATE INDEX steps_in_progress ON steps (task_id) WHERE state = 'in_progress';
