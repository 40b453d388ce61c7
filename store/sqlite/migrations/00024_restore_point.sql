-- Restore points of the event log. A store started from a backup (tasker
-- backup) goes back to the backup's last event, while the store the backup
-- was taken from may have gone on to hand out cursors beyond it, for
-- events the restore undid. Each backup records in its copy the last
-- cursor it holds (restored_after) and a seq far above any the original
-- could have reached (seq_base): the restored store numbers its new events
-- after the largest seq_base, and EventList refuses a cursor strictly
-- between the two (CursorRestoredError) instead of resuming there and
-- silently skipping, or mistaking, what follows. A store never restored
-- has no rows.

-- +goose Up
CREATE TABLE event_restores (
    seq_base       INTEGER NOT NULL PRIMARY KEY,
    restored_after INTEGER NOT NULL,
    backed_up_at   INTEGER NOT NULL,
    CHECK (seq_base > restored_after)
);

-- +goose Down
DROP TABLE event_restores;
