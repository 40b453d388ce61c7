package coordinator

import (
	"context"
	"time"

	"github.com/tasker-go/tasker/store"
)

// Event retention: a background loop deletes the history of tasks that
// finished longer ago than Config.EventRetention, through the store's
// EventPrune, which also moves the event log's floor so a subscriber whose
// cursor fell behind it is refused rather than silently skipping events.
// Deleting (rather than only refusing old cursors) is what keeps the
// transitions table, the largest one, from growing without bound. Each
// finished task keeps its last task transition, so GetTask and WatchTask
// still show how it ended; the task and its steps themselves are kept.

const (
	// pruneInterval is how often the loop looks for events past the
	// retention. Retention is counted in days, so a minute late is
	// nothing; more often would only read the log's head for nothing.
	pruneInterval = time.Minute
	// pruneBatch bounds one delete (one transaction), so a backlog never
	// holds the database's writer for long.
	pruneBatch = 500
	// pruneBatchPause is the rest between two batches of a backlog, so
	// the engine's own writes go first.
	pruneBatchPause = 10 * time.Millisecond
)

// keepRetention runs until the engine stops, pruning events older than
// retention every pruneInterval (the first time at once).
func (e *engine) keepRetention(retention time.Duration) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		if n, err := e.pruneEvents(e.ctx, e.now().Add(-retention)); err != nil {
			if e.ctx.Err() == nil {
				e.log.Warn("event retention: prune failed; trying again later", "err", err, "deleted", n)
			}
		} else if n > 0 {
			e.log.Info("event retention: deleted old transitions of finished tasks", "deleted", n, "retention", retention)
		}
		t.Reset(pruneInterval)
	}
}

// pruneEvents deletes, batch by batch, the events EventPrune may delete
// before the cutoff, and returns how many it deleted.
func (e *engine) pruneEvents(ctx context.Context, before time.Time) (int, error) {
	deleted := 0
	for {
		res, err := e.store.EventPrune(ctx, &store.EventPruneParams{Before: before, Limit: pruneBatch})
		if err != nil {
			return deleted, err
		}
		if res.Examined > 0 {
			// The floor moved: pages kept from below it must not answer
			// a cursor the store now refuses.
			e.events.forget()
		}
		deleted += res.Deleted
		if !res.More {
			return deleted, nil
		}
		t := time.NewTimer(pruneBatchPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return deleted, ctx.Err()
		case <-t.C:
		}
	}
}
