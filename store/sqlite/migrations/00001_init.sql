-- Times are INTEGER unix nanoseconds (UTC) so they round-trip exactly to
-- RFC 3339 with nanoseconds. JSON columns are TEXT. Empty strings for
-- optional ids are stored as NULL so UNIQUE ignores them.
--
-- Every step of every task writes here, so the hot tables are lean: tasks
-- and steps are WITHOUT ROWID (the row lives in its primary key's b-tree,
-- one b-tree fewer to update), transitions has no foreign keys (the store
-- writes them in the same transaction as the rows they name) and its seq
-- is a plain rowid, which only grows since rows are never deleted.

-- +goose Up
CREATE TABLE templates (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version)
);

CREATE TABLE tasks (
    id           TEXT    NOT NULL PRIMARY KEY,
    namespace    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    context      TEXT    NOT NULL,
    identity_key TEXT    UNIQUE,
    bypass_steps TEXT    NOT NULL DEFAULT '[]',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    completed_at INTEGER
) WITHOUT ROWID;

-- TaskList newest first, filtered by state or by namespace and name.
CREATE INDEX tasks_state_id ON tasks (state, id);
CREATE INDEX tasks_namespace_name_id ON tasks (namespace, name, id);
-- TaskListActive: only unfinished tasks are in this index, so resuming on
-- start never reads finished ones. Queries must repeat this exact WHERE.
CREATE INDEX tasks_active_id ON tasks (id) WHERE state IN ('pending', 'in_progress');

CREATE TABLE steps (
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
    UNIQUE (task_id, name)
) WITHOUT ROWID;

CREATE INDEX steps_task_id_position ON steps (task_id, position);

CREATE TABLE transitions (
    seq        INTEGER PRIMARY KEY,
    task_id    TEXT    NOT NULL,
    step_id    TEXT,
    step_name  TEXT    NOT NULL,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    attempt    INTEGER NOT NULL,
    metadata   TEXT
);

CREATE INDEX transitions_task_id_seq ON transitions (task_id, seq);

-- +goose Down
DROP TABLE transitions;
DROP TABLE steps;
DROP TABLE tasks;
DROP TABLE templates;
