package coordinator

import (
	"context"
	"time"
)

// Test hooks: read-only views of the engine's memory for tests in
// coordinator_test, which otherwise see only the API.

// WakeArmed reports whether the task's retry timer is armed.
func (c *Coordinator) WakeArmed(taskID string) bool {
	tr := c.engine.lookup(taskID)
	if tr == nil {
		return false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.wake != nil
}

// WaitingForSlot reports whether the named step of the task is queued for
// an executor slot.
func (c *Coordinator) WaitingForSlot(taskID, stepName string) bool {
	tr := c.engine.lookup(taskID)
	if tr == nil {
		return false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	i, ok := tr.tmpl.index[stepName]
	return ok && tr.steps[i].waiting
}

// InMemory reports whether the task is held in the engine's memory.
func (c *Coordinator) InMemory(taskID string) bool { return c.engine.lookup(taskID) != nil }

// SetRepairWait sets the first wait before a broken task is reloaded, so
// tests of a failing store need not wait 100 ms per reload.
func (c *Coordinator) SetRepairWait(d time.Duration) { c.engine.repairWait = d }

// AttemptExecutor names the executor the coordinator counts the step's
// current attempt on ("" if none or not known, as after a restart until an
// executor reports the attempt running).
func (c *Coordinator) AttemptExecutor(taskID, stepName string) string {
	tr := c.engine.lookup(taskID)
	if tr == nil {
		return ""
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	i, ok := tr.tmpl.index[stepName]
	if !ok {
		return ""
	}
	return tr.steps[i].executor
}

// NotifyParent tells the owner of a parent task that the child of one of
// its steps finished, as the coordinator committing the child's end does
// (children.go).
func (c *Coordinator) NotifyParent(ctx context.Context, parentID, stepID string) error {
	return c.engine.notifyParent(ctx, parentID, stepID)
}

// HoldTask takes the task's lock, as an event being applied to it holds
// it, until release; queued reports how many results wait for the lock
// meanwhile.
func (c *Coordinator) HoldTask(taskID string) (queued func() int, release func()) {
	tr := c.engine.lookup(taskID)
	tr.mu.Lock()
	return func() int {
		tr.qmu.Lock()
		defer tr.qmu.Unlock()
		return len(tr.queue)
	}, tr.mu.Unlock
}

// SetChildRecheck sets how often child steps and child tasks look at each
// other, so tests need not wait 10 s for a look.
func (cfg *Config) SetChildRecheck(d time.Duration) { cfg.childRecheck = d }
