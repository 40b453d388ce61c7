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

	requests  chan *Request[W] // unbuffered: a sender blocked here is queued
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once

	queued    atomic.Int64 // writers waiting for the committer to take them
	taken     atomic.Int64 // requests the committer took
	commits   atomic.Int64
	committed atomic.Int64 // requests in committed batches
}

// Start starts a committer that takes at most maxBatch requests a batch.
func Start[W any](maxBatch int, commit CommitFunc[W], failed BatchFailedFunc) *Committer[W] {
	c := &Committer[W]{
		maxBatch: max(maxBatch, 1), commit: commit, failed: failed,
		requests: make(chan *Request[W]), closing: make(chan struct{}), stopped: make(chan struct{}),
	}
	go c.loop()
	return c
}

// Submit hands work to the committer and waits for the outcome. Until the
// committer takes the request, ctx can withdraw it; after that the caller
// waits for the real outcome, so it is never told a committed write failed.
func (c *Committer[W]) Submit(ctx context.Context, op string, work W) error {
	if c.Closed() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req := NewRequest(op, work)
	c.queued.Add(1)
	select {
	case c.requests <- req:
		c.queued.Add(-1)
	case <-ctx.Done():
		c.queued.Add(-1)
		return fmt.Errorf("%s withdrawn before commit: %w", op, context.Cause(ctx))
	case <-c.closing:
		c.queued.Add(-1)
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	return req.Wait()
}

// loop blocks for one request, then takes whatever else is already waiting
// (never waiting for more), so batches grow with load and an idle store
// commits at once.
func (c *Committer[W]) loop() {
	defer close(c.stopped)
	batch := make([]*Request[W], 0, c.maxBatch)
	for {
		select {
		case <-c.closing:
			return
		case req := <-c.requests:
			batch = append(batch[:0], req)
		}
	drain:
		for len(batch) < c.maxBatch {
			select {
			case req := <-c.requests:
				batch = append(batch, req)
			default:
				break drain
			}
		}
		c.taken.Add(int64(len(batch)))
		c.RunBatch(batch)
		clear(batch) // drop references so finished requests can be collected
	}
}

// RunBatch commits batch and answers every request. Only the committer's
// goroutine calls it, or a test that owns the store.
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

// Close stops the committer after its current batch; requests still
// waiting, and every Submit after, get store.ErrClosed.
func (c *Committer[W]) Close() {
	c.closeOnce.Do(func() { close(c.closing) })
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
	// Taken counts requests the committer took; Queued the writers waiting
	// for it now.
	Taken, Queued int64
}

// Stats returns the counters.
func (c *Committer[W]) Stats() Stats {
	return Stats{Commits: c.commits.Load(), Requests: c.committed.Load(), Taken: c.taken.Load(), Queued: c.queued.Load()}
}
