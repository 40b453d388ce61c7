-- Coordinator leases: each coordinator owns tasks under a lease with a
-- unique, ever-growing token. A task's owner_token names the lease that
-- owns it; writes carrying another token are refused (fencing).

-- +goose Up
CREATE TABLE lease_tokens (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO lease_tokens (id, value) VALUES (1, 0);

CREATE TABLE leases (
    coordinator_id TEXT    NOT NULL PRIMARY KEY,
    token          INTEGER NOT NULL UNIQUE,
    expires_at     INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE tasks ADD COLUMN owner_token INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE tasks DROP COLUMN owner_token;
DROP TABLE leases;
DROP TABLE lease_tokens;
