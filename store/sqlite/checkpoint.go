package sqlite

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
)

// checkpointInterval is how often the checkpointer copies committed WAL
// frames back into the database file. Shorter keeps the WAL (and read
// amplification) small; longer batches more pages per copy. Either way the
// copy runs beside the committer, never inside a commit.
const checkpointInterval = 250 * time.Millisecond

// walRestartFrames is how many frames a background checkpoint may leave in
// the WAL before the committer finishes the checkpoint itself (see
// finishCheckpoint): 16 MiB of 4 KiB pages.
const walRestartFrames = 4096

// walJournalLimit is the size SQLite cuts the WAL file back to when it
// starts the WAL over, should a long read have let it grow past that.
const walJournalLimit = 64 << 20

// checkpointLoop runs PASSIVE checkpoints on its own connection until
// closing is closed. SQLite's automatic checkpoint is off on the writer:
// it would run inside whichever commit crossed the threshold and stall
// every write waiting on that batch for the whole copy. A pass that leaves
// the WAL at walRestartFrames or more sets finish, for the committer.
func checkpointLoop(conn *sqlx.DB, closing <-chan struct{}, done chan<- struct{}, finish *atomic.Bool, log *slog.Logger) {
	defer close(done)
	tick := time.NewTicker(checkpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-closing:
			return
		case <-tick.C:
		}
		logFrames, err := passiveCheckpoint(conn)
		if err == nil && logFrames >= walRestartFrames {
			// Once more at once, to copy what was committed during the
			// pass, so that what the committer is left to copy is what the
			// last commit or two wrote.
			_, err = passiveCheckpoint(conn)
			finish.Store(true)
		}
		if err != nil {
			log.Warn("sqlite checkpoint failed", "error", err)
		}
	}
}

// rowQuerier is a connection or a pool that a checkpoint can run on.
type rowQuerier interface {
	QueryRowxContext(ctx context.Context, query string, args ...any) *sqlx.Row
}

// passiveCheckpoint runs one PASSIVE checkpoint on conn and returns how
// many frames the WAL holds.
func passiveCheckpoint(conn rowQuerier) (logFrames int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy, copied int
	err = conn.QueryRowxContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied)
	return logFrames, err
}

// finishCheckpoint copies into the database file what the background
// checkpointer has not yet, on the writer's connection between two
// batches, so that the next batch finds the whole WAL copied and SQLite
// starts it over from its beginning. SQLite does that only when a write
// begins with every frame copied, and under sustained writes the
// background passes never get there by themselves: a commit always lands
// while one runs. The WAL then grew by every page written, for as long as
// the load lasted (2 GB beside a 500 MB database after a minute of
// linear4 at concurrency 500), and every commit's fsync was that of a
// growing file. What is left to copy is what the last few commits wrote,
// the background pass having just copied the rest. Called by the
// committer only, with no transaction open; finish is set again by the
// next background pass if this one could not copy everything (a reader
// still using older frames).
func (s *Store) finishCheckpoint() {
	s.finishCkpt.Store(false)
	if _, err := passiveCheckpoint(s.wconn); err != nil {
		s.logger.Warn("sqlite checkpoint on the writer failed", "error", err)
	}
}
