-- Restores of the event log. A cursor is (xact, seq), xact being the id of
-- the transaction that wrote the row, and a read returns only rows below
-- its snapshot's xmin (see 00006_events.sql and events.go). Those ids are
-- the cluster's: a dump restored into another cluster whose ids are behind
-- the original's would hide every restored row above the new cluster's
-- xmin, and sort the restored store's new events before the old ones, so a
-- subscriber resuming from its cursor would never see them. The same goes,
-- in any cluster, for the cursors the original handed out after the dump.
--
-- So the store knows where it is (store_identity: the cluster's system
-- identifier, the database's and the tasks table's oids, all new in a
-- restored copy), and Open, finding them changed or a row written by an id
-- ahead of this cluster's, starts a new era: rows written from then on
-- record txid_current() + xact_base (the column's default is set to that),
-- with xact_base putting the era's first id (first_xact) 2^40 above every
-- id stored, and reads move their horizon by the same base. EventList
-- refuses a cursor between the restored log's last entry
-- (restored_after_xact, restored_after_seq) and the new era (the original
-- handed it out, for events the restore undid) instead of resuming there.
-- A store never restored has no rows in event_restores.

-- +goose Up
CREATE TABLE store_identity (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    identity TEXT    NOT NULL
);

CREATE TABLE event_restores (
    xact_base           BIGINT NOT NULL PRIMARY KEY,
    first_xact          BIGINT NOT NULL,
    restored_after_xact BIGINT NOT NULL,
    restored_after_seq  BIGINT NOT NULL,
    detected_at         BIGINT NOT NULL,
    reason              TEXT   NOT NULL,
    CHECK (first_xact > restored_after_xact)
);

-- +goose Down
ALTER TABLE transitions ALTER COLUMN xact SET DEFAULT txid_current();
DROP TABLE event_restores;
DROP TABLE store_identity;
