-- Named rate limits: token buckets steps draw on. Only the definitions
-- live here; admission keeps the tokens. The period is whole milliseconds.

-- +goose Up
CREATE TABLE rate_limits (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    units      BIGINT           NOT NULL CHECK (units > 0),
    period_ms  BIGINT           NOT NULL CHECK (period_ms > 0),
    burst      BIGINT           NOT NULL CHECK (burst >= 1),
    created_at BIGINT           NOT NULL,
    updated_at BIGINT           NOT NULL
);

-- +goose Down
DROP TABLE rate_limits;
