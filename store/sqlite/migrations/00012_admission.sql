-- Flow control. An admission entry is a task or step holding, or waiting
-- in line for, a concurrency key (or a rate limit's bucket, key
-- "rate:<limit>:<key>"). Whether an entry holds is derived from its task
-- and step rows when read (see package admission), so nothing here needs
-- releasing when a task or step ends. Buckets keep a rate limit's tokens
-- as of a time.

-- +goose Up
CREATE TABLE admission_entries (
    key      TEXT    NOT NULL,
    owner    TEXT    NOT NULL,
    task_id  TEXT    NOT NULL,
    step_id  TEXT,
    attempt  INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL,
    since    INTEGER NOT NULL,
    holding  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key, owner)
) WITHOUT ROWID;

CREATE TABLE rate_buckets (
    limit_name TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    tokens     REAL    NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (limit_name, key)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE rate_buckets;
DROP TABLE admission_entries;
