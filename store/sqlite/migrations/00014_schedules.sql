-- Cron schedules and the runs their firings made. A schedule's cursor
-- (next_fire_at, buffered_at, paused) moves only by a write conditional on
-- revision, so two coordinators never both advance it. A run either names
-- the task a firing created (at most one per fire time: the partial unique
-- index) or says why it was skipped; a skipped row may stand for a range
-- of fire times (skipped_count of them, fire_at to last_fire_at).

-- +goose Up
CREATE TABLE schedules (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    namespace        TEXT    NOT NULL,
    template_name    TEXT    NOT NULL,
    template_version TEXT    NOT NULL DEFAULT '',
    cron             TEXT    NOT NULL,
    timezone         TEXT    NOT NULL DEFAULT '',
    context          TEXT    NOT NULL,
    overlap          TEXT    NOT NULL,
    catchup_window   INTEGER NOT NULL,
    paused           INTEGER NOT NULL DEFAULT 0,
    next_fire_at     INTEGER NOT NULL,
    buffered_at      INTEGER NOT NULL DEFAULT 0,
    revision         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE schedule_runs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id   TEXT    NOT NULL,
    fire_at       INTEGER NOT NULL,
    task_id       TEXT    NOT NULL DEFAULT '',
    skipped       TEXT    NOT NULL DEFAULT '',
    skipped_count INTEGER NOT NULL DEFAULT 0,
    last_fire_at  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE UNIQUE INDEX schedule_runs_task ON schedule_runs (schedule_id, fire_at) WHERE task_id <> '';
CREATE INDEX schedule_runs_by_fire ON schedule_runs (schedule_id, fire_at, seq);

-- +goose Down
DROP TABLE schedule_runs;
DROP TABLE schedules;
