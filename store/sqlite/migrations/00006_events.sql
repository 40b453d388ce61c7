-- The event log: transitions read across tasks by seq (a rowid, assigned
-- under SQLite's single writer, so seq order is commit order), from a
-- floor below which old entries may have been deleted (EventPrune).
--
-- Once entries are deleted, 00001's promise that seq "only grows since
-- rows are never deleted" rests on EventPrune never deleting the row with
-- the largest seq: SQLite gives a new row max(rowid)+1, so deleting the
-- newest row would hand its seq out again and a cursor could name two
-- entries.

-- +goose Up
CREATE TABLE event_floor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO event_floor (id, seq) VALUES (1, 0);

-- +goose Down
DROP TABLE event_floor;
