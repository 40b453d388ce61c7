package sqlite

import (
	"context"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"
)

// checkpointInterval is how often the checkpointer copies committed WAL
// frames back into the database file. Shorter keeps the WAL (and read
// amplification) small; longer batches more pages per copy. Either way the
// copy runs beside the committer, never inside a commit.
const checkpointInterval = 250 * time.Millisecond

// checkpointLoop runs PASSIVE checkpoints on its own connection until
// closing is closed. SQLite's automatic checkpoint is off on the writer:
// it would run inside whichever commit crossed the threshold and stall
// every write waiting on that batch for the whole copy.
func checkpointLoop(conn *sqlx.DB, closing <-chan struct{}, done chan<- struct{}, log *slog.Logger) {
	defer close(done)
	tick := time.NewTicker(checkpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-closing:
			return
		case <-tick.C:
		}
		var busy, logFrames, copied int
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := conn.QueryRowxContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied)
		cancel()
		if err != nil {
			log.Warn("sqlite checkpoint failed", "error", err)
		}
	}
}
