package coordinator

import (
	"sync"
	"time"
)

// routines owns the coordinator's background goroutines (timers firing,
// results held for retry, slots handed to waiting steps, repairs): each is
// started through it, none starts once it is closed, and close waits until
// every one has returned. That is what lets Stop promise that nothing of
// the coordinator still runs, so the store can be closed after it.
type routines struct {
	mu     sync.Mutex // protects closed and orders wg.Add before wg.Wait
	closed bool
	wg     sync.WaitGroup
}

// enter counts one more running goroutine, unless closed.
func (r *routines) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

// goFn runs f on a goroutine of its own, unless closed; it reports whether
// f was started.
func (r *routines) goFn(f func()) bool {
	if !r.enter() {
		return false
	}
	go func() {
		defer r.wg.Done()
		f()
	}()
	return true
}

// afterFunc runs f after d, like time.AfterFunc, unless closed by then.
func (r *routines) afterFunc(d time.Duration, f func()) *time.Timer {
	return time.AfterFunc(d, func() {
		if !r.enter() {
			return
		}
		defer r.wg.Done()
		f()
	})
}

// close stops new goroutines from starting and waits for the running ones.
// Callers must first make them return (cancel their context, close what
// they wait on).
func (r *routines) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
}
