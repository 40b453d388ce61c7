// Package groupcommit shares transactions between concurrent writes: every
// store driver hands its writes to one committer goroutine, which takes
// whatever is waiting and commits it together. The driver supplies how a
// batch is committed; this package owns the queue, the batching and the
// answers, so every driver keeps the same promises.
package groupcommit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tasker-go/tasker/store"
)

// Request is one write waiting for its batch. W is the driver's form of the
// work (a function over its transaction, for instance).
type Request[W any] struct {
	Op   string
	Work W
	done chan error // buffered 1, so the committer never blocks answering
}

// NewRequest makes a request; drivers' tests use it to build batches by
// hand for RunBatch.
func NewRequest[W any](op string, work W) *Request[W] {
	return &Request[W]{Op: op, Work: work, done: make(chan error, 1)}
}

// Wait returns the request's outcome once its batch is answered.
func (r *Request[W]) Wait() error { return <-r.done }

// CommitFunc commits a batch in one transaction. It records each request's
// own failure (a refused precondition) in outcomes and returns an error only
// when nothing in the batch was committed.
type CommitFunc[W any] func(batch []*Request[W], outcomes []error) error

// BatchFailedFunc is told of a batch that committed nothing, and returns
// the error its requests get (classified, for instance, as unavailable).
type BatchFailedFunc func(err error, requests int) error

// Committer runs the batches.
type Committer[W any] struct {
	maxBatch int
	commit   CommitFunc[W]
	failed   BatchFailedFunc

	mu     sync.Mutex
	queue  []*Request[W] // writes waiting for the committer, oldest first; guarded by mu
	closed bool          // guarded by mu; set by Close, after which nothing is queued
	// busy is set while a batch is being committed, by the loop or by a
	// submitter leading it (see Submit); guarded by mu. At most one batch
	// runs at a time.
	busy bool
	// leaders counts submitters committing a batch, so Close can wait for
	// them; added to under mu while not closed.
	leaders sync.WaitGroup

	wake      chan struct{} // buffered 1: the queue may have grown
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once

	taken     atomic.Int64 // requests the committer took
	commits   atomic.Int64
	committed atomic.Int64 // requests in committed batches
}

// Start starts a committer that takes at most maxBatch requests a batch.
func Start[W any](maxBatch int, commit CommitFunc[W], failed BatchFailedFunc) *Committer[W] {
	c := &Committer[W]{
		maxBatch: max(maxBatch, 1), commit: commit, failed: failed,
		wake: make(chan struct{}, 1), closing: make(chan struct{}), stopped: make(chan struct{}),
	}
	go c.loop()
	return c
}

// Submit hands work to the committer and waits for the outcome. Until the
// committer takes the request, ctx can withdraw it; after that the caller
// waits for the real outcome, so it is never told a committed write failed.
//
// When no batch is being committed, the caller commits one itself, its own
// write and whatever else is queued, rather than wake the committer's
// goroutine and wait to be woken in turn: a write to an idle store costs
// no hand-over between goroutines (two wake-ups, each tens of
// microseconds on a machine whose processors sleep). Under load a batch is
// always running, so writes queue and the committer's goroutine takes
// them, as before.
func (c *Committer[W]) Submit(ctx context.Context, op string, work W) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req := NewRequest(op, work)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	c.queue = append(c.queue, req)
	if !c.busy {
		c.busy = true
		c.leaders.Add(1)
		batch := c.takeLocked()
		c.mu.Unlock()
		c.lead(batch)
		return req.Wait()
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is pending already
	}

	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		if c.withdraw(req) {
			return fmt.Errorf("%s withdrawn before commit: %w", op, context.Cause(ctx))
		}
		return req.Wait()
	}
}

// withdraw removes req from the queue and reports whether it was still
// there; if not, the committer took it (or Close answered it).
func (c *Committer[W]) withdraw(req *Request[W]) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, queued := range c.queue {
		if queued == req {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			return true
		}
	}
	return false
}

// lead commits batch for a submitter that found no batch running, then
// leaves what queued meanwhile to the committer's goroutine.
func (c *Committer[W]) lead(batch []*Request[W]) {
	defer c.leaders.Done()
	c.taken.Add(int64(len(batch)))
	c.RunBatch(batch)
	c.mu.Lock()
	c.busy = false
	more := len(c.queue) > 0
	c.mu.Unlock()
	if more {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// loop waits for writes, then commits whatever is queued, up to maxBatch a
// batch, until the queue is empty (never waiting for more), so batches
// grow with load and an idle store commits at once. It leaves the queue
// alone while a submitter leads a batch; that one wakes it when done.
func (c *Committer[W]) loop() {
	defer close(c.stopped)
	for {
		select {
		case <-c.closing:
			return
		case <-c.wake:
		}
		for {
			c.mu.Lock()
			if c.busy {
				c.mu.Unlock()
				break
			}
			batch := c.takeLocked()
			if len(batch) == 0 {
				c.mu.Unlock()
				break
			}
			c.busy = true
			c.mu.Unlock()
			c.taken.Add(int64(len(batch)))
			c.RunBatch(batch)
			c.mu.Lock()
			c.busy = false
			c.mu.Unlock()
		}
	}
}

// takeLocked removes up to maxBatch requests from the front of the queue;
// c.mu is held.
func (c *Committer[W]) takeLocked() []*Request[W] {
	n := min(len(c.queue), c.maxBatch)
	if n == 0 {
		return nil
	}
	batch := make([]*Request[W], n)
	copy(batch, c.queue)
	// Shift rather than reslice, so the backing array does not keep
	// answered requests alive.
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return batch
}

// RunBatch commits batch and answers every request. Only the committer
// calls it (its goroutine, or a submitter leading a batch), or a test that
// owns the store.
func (c *Committer[W]) RunBatch(batch []*Request[W]) {
	outcomes := make([]error, len(batch))
	if err := c.commit(batch, outcomes); err != nil {
		err = c.failed(err, len(batch))
		for _, req := range batch {
			req.done <- fmt.Errorf("%s: batch of %d writes failed: %w", req.Op, len(batch), err)
		}
		return
	}
	c.commits.Add(1)
	c.committed.Add(int64(len(batch)))
	for i, req := range batch {
		req.done <- outcomes[i]
	}
}

// Close stops the committer after its current batch (the goroutine's or a
// leading submitter's); requests still queued, and every Submit after, get
// store.ErrClosed.
func (c *Committer[W]) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		queued := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, req := range queued {
			req.done <- fmt.Errorf("%s: %w", req.Op, store.ErrClosed)
		}
		c.leaders.Wait()
		close(c.closing)
	})
	<-c.stopped
}

// Closed reports whether Close was called.
func (c *Committer[W]) Closed() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// Closing is closed when Close is called, so a driver's other loops can
// stop with the committer.
func (c *Committer[W]) Closing() <-chan struct{} { return c.closing }

// Stats are the committer's cumulative counters.
type Stats struct {
	// Commits is the number of committed batches; Requests the writes they
	// held (Requests/Commits is the mean batch size).
	Commits, Requests int64
	// Taken counts requests the committer took; Queued the writes waiting
	// for it now, all of which its next batches will take (up to maxBatch
	// a batch) unless withdrawn.
	Taken, Queued int64
}

// Stats returns the counters.
func (c *Committer[W]) Stats() Stats {
	c.mu.Lock()
	queued := len(c.queue)
	c.mu.Unlock()
	return Stats{Commits: c.commits.Load(), Requests: c.committed.Load(), Taken: c.taken.Load(), Queued: int64(queued)}
}
