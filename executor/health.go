package executor

import "errors"

// ErrNotReady is what Ready returns while no coordinator has an Execute
// stream open to this executor.
var ErrNotReady = errors.New("not ready: no coordinator has an Execute stream open to this executor")

// Ready reports whether this executor can receive steps now: at least one
// coordinator has an Execute stream open to it.
func (e *Executor) Ready() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.sessions) == 0 {
		return ErrNotReady
	}
	return nil
}
