-- The event log: transitions read across tasks in one order every
-- coordinator agrees on, each entry with a cursor, from a floor below
-- which old entries may have been deleted (EventPrune).
--
-- seq alone cannot be that order here: identity values are handed out
-- when a row is inserted, not when its transaction commits, so with
-- several writers a row with a smaller seq can become visible after a
-- reader has moved past a larger one, and "seq > cursor" would skip it.
-- Instead each row records the (epoch-extended) id of the transaction
-- that wrote it, and the log is ordered by (xact, seq): a reader takes
-- only rows whose xact is below the oldest transaction still running in
-- its snapshot (txid_snapshot_xmin), all of whose transactions have
-- ended, so every row that will ever sort before what it returns is
-- already visible to it. See store/postgres/events.go.
--
-- xact: txid_current() returns the top-level transaction's id even inside
-- the committer's savepoints, which is what snapshots list. Rows written
-- before this migration keep 0 (a constant default adds the column
-- without rewriting the table; the volatile default is set afterwards, for
-- new rows only) and so sort first, in seq order: all of them committed
-- before the migration took its lock. txid_current() rather than
-- pg_current_xact_id() keeps PostgreSQL 12 supported.
--
-- transitions_xact_seq serves the log's reads and the floor's moves; it is
-- built inside the migration's transaction, holding writes to transitions
-- for as long as the build takes.

-- +goose Up
ALTER TABLE transitions ADD COLUMN xact BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transitions ALTER COLUMN xact SET DEFAULT txid_current();
CREATE INDEX transitions_xact_seq ON transitions (xact, seq);

CREATE TABLE event_floor (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    xact BIGINT  NOT NULL,
    seq  BIGINT  NOT NULL
);
INSERT INTO event_floor (id, xact, seq) VALUES (1, 0, 0);

-- +goose Down
DROP TABLE event_floor;
DROP INDEX transitions_xact_seq;
ALTER TABLE transitions DROP COLUMN xact;
