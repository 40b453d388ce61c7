-- The same tables as the SQLite driver, in PostgreSQL's types. Times are
-- BIGINT unix nanoseconds (UTC): timestamptz stops at microseconds and the
-- store promises exact round trips. JSON is TEXT, so the store keeps exactly
-- the bytes it was given and accepts exactly what the SQLite driver accepts
-- (jsonb would reorder keys and refuse "\u0000"). Keys and names compare as
-- bytes (COLLATE "C"), as in SQLite, whatever the database's locale: IDs are
-- time-ordered UUIDs paged with < and >, and byte order is also the fastest.
-- Empty optional ids are stored as NULL so UNIQUE skips them.

-- +goose Up
CREATE TABLE templates (
    namespace  TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    version    TEXT COLLATE "C" NOT NULL,
    digest     TEXT             NOT NULL,
    spec       TEXT             NOT NULL,
    created_at BIGINT           NOT NULL,
    -- Insertion order, which TemplateList keeps within a name.
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (namespace, name, version)
);

CREATE TABLE tasks (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    namespace    TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    version      TEXT COLLATE "C" NOT NULL,
    state        TEXT COLLATE "C" NOT NULL CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    context      TEXT             NOT NULL,
    identity_key TEXT COLLATE "C" UNIQUE,
    bypass_steps TEXT[]           NOT NULL DEFAULT '{}',
    created_at   BIGINT           NOT NULL,
    updated_at   BIGINT           NOT NULL,
    completed_at BIGINT
);

-- TaskList newest first, filtered by state or by namespace and name.
CREATE INDEX tasks_state_id ON tasks (state, id);
CREATE INDEX tasks_namespace_name_id ON tasks (namespace, name, id);
-- TaskListActive: only unfinished tasks are in this index, so resuming on
-- start never reads finished ones. Queries must repeat this exact WHERE.
CREATE INDEX tasks_active_id ON tasks (id) WHERE state IN ('pending', 'in_progress');

CREATE TABLE steps (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    task_id         TEXT COLLATE "C" NOT NULL REFERENCES tasks (id),
    name            TEXT COLLATE "C" NOT NULL,
    position        INTEGER          NOT NULL,
    handler         TEXT             NOT NULL,
    depends_on      TEXT[]           NOT NULL DEFAULT '{}',
    state           TEXT COLLATE "C" NOT NULL CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
    attempts        INTEGER          NOT NULL,
    max_attempts    INTEGER          NOT NULL,
    retryable       BOOLEAN          NOT NULL,
    skippable       BOOLEAN          NOT NULL,
    results         TEXT,
    error_message   TEXT,
    error_class     TEXT,
    error_retryable BOOLEAN,
    next_retry_at   BIGINT,
    updated_at      BIGINT           NOT NULL,
    UNIQUE (task_id, name)
);

CREATE INDEX steps_task_id_position ON steps (task_id, position);

-- No foreign keys here, as in the SQLite driver: the store writes each
-- transition in the same statement as the row change it records, and a
-- foreign key check would lock the task row FOR KEY SHARE on every step
-- transition (a heap write and a WAL record per transition).
CREATE TABLE transitions (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id    TEXT COLLATE "C" NOT NULL,
    step_id    TEXT COLLATE "C",
    step_name  TEXT             NOT NULL,
    from_state TEXT             NOT NULL,
    to_state   TEXT             NOT NULL,
    at         BIGINT           NOT NULL,
    reason     TEXT             NOT NULL,
    attempt    INTEGER          NOT NULL,
    metadata   TEXT
);

CREATE INDEX transitions_task_id_seq ON transitions (task_id, seq);

-- The two functions below turn a conditional UPDATE that matched no row into
-- an error, inside the statement itself. That is what lets the committer
-- pipeline a whole batch in one round trip: a refused request stops the
-- server right there (it skips the rest of the pipeline), so no later
-- request runs on top of a change that is about to be rolled back. They run
-- only on the refusal path, to say why: SQLSTATE TK404 (no such row) or TK409
-- (the precondition no longer holds), with the current state in the message.

-- +goose StatementBegin
CREATE FUNCTION tasker_step_refused(p_task_id TEXT, p_step_id TEXT, p_from TEXT, p_attempts INTEGER)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    cur_state    TEXT;
    cur_attempts INTEGER;
BEGIN
    SELECT state, attempts INTO cur_state, cur_attempts FROM steps WHERE id = p_step_id AND task_id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such step in this task' USING ERRCODE = 'TK404';
    END IF;
    RAISE EXCEPTION 'expected % with % attempts, found % with %', p_from, p_attempts, cur_state, cur_attempts
        USING ERRCODE = 'TK409';
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION tasker_task_refused(p_task_id TEXT, p_from TEXT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    cur_state TEXT;
BEGIN
    SELECT state INTO cur_state FROM tasks WHERE id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such task' USING ERRCODE = 'TK404';
    END IF;
    RAISE EXCEPTION 'task is %, not %', cur_state, p_from USING ERRCODE = 'TK409';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tasker_task_refused(TEXT, TEXT);
DROP FUNCTION tasker_step_refused(TEXT, TEXT, TEXT, INTEGER);
DROP TABLE transitions;
DROP TABLE steps;
DROP TABLE tasks;
DROP TABLE templates;
