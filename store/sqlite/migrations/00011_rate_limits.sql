-- Named rate limits: token buckets steps draw on. Only the definitions
-- live here; admission keeps the tokens. The period is whole milliseconds.

-- +goose Up
CREATE TABLE rate_limits (
    name       TEXT    NOT NULL PRIMARY KEY,
    units      INTEGER NOT NULL CHECK (units > 0),
    period_ms  INTEGER NOT NULL CHECK (period_ms > 0),
    burst      INTEGER NOT NULL CHECK (burst >= 1),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE rate_limits;
