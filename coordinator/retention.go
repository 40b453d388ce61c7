package coordinator

import (
	"context"
	"errors"
	"fmt"
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
// still show how it ended.
//
// Task retention (Config.TaskRetention, off by default) then deletes
// finished tasks themselves, through the store's TaskPrune, which keeps
// any task whose events are still above the log's floor: a task goes only
// after its history has left the event log, so no subscriber misses an
// event of it. That is why a task retention needs an event retention no
// longer than it.

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

// checkTaskRetention checks a task retention against the event retention
// it relies on.
func checkTaskRetention(tasks, events time.Duration) error {
	switch {
	case tasks < 0:
		return fmt.Errorf("task retention %s is negative (zero keeps tasks forever)", tasks)
	case tasks == 0:
		return nil
	case events == 0:
		return errors.New("a task retention needs an event retention: tasks are deleted only once their events have left the event log, which an event retention of 0 keeps forever")
	case tasks < events:
		return fmt.Errorf("task retention %s is shorter than the event retention %s: tasks are deleted only once their events have left the event log, so it would act as %s", tasks, events, events)
	}
	return nil
}

// keepRetention runs until the engine stops, every pruneInterval (the
// first time at once): it prunes events older than retention and, with
// tasks not 0, then tasks that finished longer ago than tasks.
func (e *engine) keepRetention(retention, tasks time.Duration) {
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
		if tasks > 0 {
			if n, err := e.pruneTasks(e.ctx, e.now().Add(-tasks)); err != nil {
				if e.ctx.Err() == nil {
					e.log.Warn("task retention: prune failed; trying again later", "err", err, "deleted", n)
				}
			} else if n > 0 {
				e.log.Info("task retention: deleted finished tasks", "deleted", n, "retention", tasks)
			}
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
		if err := restBetweenBatches(ctx); err != nil {
			return deleted, err
		}
	}
}

// pruneTasks deletes, batch by batch, the finished tasks TaskPrune may
// delete before the cutoff, and returns how many it deleted.
func (e *engine) pruneTasks(ctx context.Context, before time.Time) (int, error) {
	deleted := 0
	for {
		// Task ids are UUIDv7: every task created before the cutoff (a
		// minute's slack for ids a burst ran ahead of the clock) has a
		// smaller id, so the store looks at those, not at every finished
		// task kept.
		res, err := e.store.TaskPrune(ctx, &store.TaskPruneParams{Before: before, BeforeID: idFloor(before.Add(time.Minute))})
		if err != nil {
			return deleted, err
		}
		deleted += res.Deleted
		e.metrics.tasksPruned.Add(float64(res.Deleted))
		if !res.More {
			return deleted, nil
		}
		if err := restBetweenBatches(ctx); err != nil {
			return deleted, err
		}
	}
}

// restBetweenBatches waits pruneBatchPause, so the engine's own writes go
// between two batches of a backlog; ctx's error if it ends first.
func restBetweenBatches(ctx context.Context) error {
	t := time.NewTimer(pruneBatchPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
