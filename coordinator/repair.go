package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// errRepairing refuses events for a task being reloaded after a failed write;
// it wraps store.ErrUnavailable, so callers treat it as "try again".
var errRepairing = fmt.Errorf("task is being reloaded after a failed write: %w", store.ErrUnavailable)

// Bounds of the wait between two reloads of a broken task. The first reload
// comes soon (most failures are a busy moment); a store that keeps refusing
// writes is asked at most every repairMaxWait per task.
const (
	repairMinWait = 100 * time.Millisecond
	repairMaxWait = 5 * time.Second
)

// breakTask marks a task whose memory can no longer be trusted (a write
// failed after memory changed) and makes sure one repair goroutine reloads
// it. A failure during that repair only marks it broken again: the running
// repair tries again after its backoff, so a store that serves reads but
// refuses writes costs one reload per backoff, never a growing number of
// repairers. The caller holds tr.mu.
func (e *engine) breakTask(tr *taskRun) {
	tr.broken = true
	if tr.repairing || tr.done {
		return
	}
	tr.repairing = true
	if !e.bg.goFn(func() { e.repair(tr) }) {
		tr.repairing = false // stopping: the next start reloads it from the store
	}
}

// repair reloads a broken task until the store takes its writes again, with
// exponential backoff. Until then the task refuses events with errRepairing,
// which callers retry (streamed results) or report (API calls).
func (e *engine) repair(tr *taskRun) {
	wait := e.repairWait
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-timer.C:
		}
		done, err := e.repairOnce(tr)
		if done {
			return
		}
		e.log.Warn("task reload failed; retrying", "task_id", tr.task.ID, "retry_in", wait, "err", err)
		wait = min(2*wait, repairMaxWait)
		timer.Reset(wait)
	}
}

// repairOnce makes one reload attempt and reports whether the repair is
// over (reloaded, retired, or no longer broken).
func (e *engine) repairOnce(tr *taskRun) (bool, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.done || !tr.broken {
		tr.repairing = false
		return true, nil
	}
	e.metrics.repairs.Inc()
	err := e.reload(tr)
	if err == nil && !tr.broken || tr.done {
		tr.repairing = false
		e.log.Info("task reloaded after store failure", "task_id", tr.task.ID)
		return true, nil
	}
	if err == nil {
		err = errRepairing
	}
	return false, err
}

// reload replaces a task's memory with what the store holds and continues
// it. A task the store does not have (its creation was never committed) is
// dropped. The caller holds tr.mu.
func (e *engine) reload(tr *taskRun) error {
	t, err := e.store.TaskGet(e.ctx, tr.task.ID)
	if errors.Is(err, store.ErrNotFound) {
		e.log.Warn("task not in the store after a failed write; dropping it", "task_id", tr.task.ID)
		e.retire(tr)
		return nil
	}
	var steps []*store.Step
	if err == nil {
		steps, err = e.store.StepList(e.ctx, tr.task.ID)
	}
	if err != nil {
		return err
	}
	fresh := newTaskRun(t, tr.tmpl, steps)
	fresh.flow = tr.flow
	if !bytes.Equal(t.Context, tr.task.Context) {
		// A debounced create replaced the context in a write whose outcome
		// was unknown, and it committed: the keys follow the stored context.
		fresh.flow = loadedFlow(e.log, tr.tmpl, t)
	}
	for i, s := range fresh.steps {
		old := tr.steps[i]
		if old.timer != nil {
			old.timer.Stop()
		}
		s.lastExecutor = old.lastExecutor
		if s.State == state.InProgress && old.executor != "" && old.Attempts == s.Attempts {
			s.executor, s.span = old.executor, old.span
		} else {
			e.trace.endAttempt(old, "")
		}
		// waiting is not carried over: schedule queues ready steps again,
		// and a stale queue entry only finds its step busy and passes its
		// slot on.
	}
	if tr.wake != nil {
		tr.wake.Stop()
	}
	tr.wakeGen++
	tr.task, tr.steps, tr.view, tr.byID = fresh.task, fresh.steps, fresh.view, fresh.byID
	tr.satisfied, tr.exhausted, tr.errored, tr.wake = fresh.satisfied, fresh.exhausted, fresh.errored, nil
	tr.running = 0
	tr.broken = false
	// A write that failed may still have committed (a connection lost
	// after COMMIT): watchers re-read the task from the store, and a new
	// watcher is never told it is up to date until the next commit.
	tr.lastSeq = 0
	e.hub.publish(tr.task.ID, watchEvent{})
	e.watchInFlight(tr)
	c := e.newChange(tr)
	e.schedule(c, nil)
	return e.commit(e.ctx, c)
}
