package coordinator

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/store"
)

// The global event stream: the store's event log (store.Store.EventList)
// read by each subscriber from its own cursor. The log, not memory, is what
// subscribers read, so a cursor means the same on every coordinator and
// after restarts; memory only says when to read again. A follower that has
// caught up sleeps until this coordinator commits something (the hub rings
// a bell on every commit) or, for what other coordinators commit to a
// shared database, until a modest poll interval passes.

// bell wakes everyone waiting on it at once, however often it is rung in
// between: a broadcast whose ring costs one atomic load while nobody
// waits, so the engine's commits pay nothing for it without subscribers.
type bell struct {
	ch atomic.Pointer[chan struct{}]
}

// wait returns a channel closed by the next ring. Take it before reading
// what the ring announces, so a ring during the read is not lost.
func (b *bell) wait() <-chan struct{} {
	for {
		if p := b.ch.Load(); p != nil {
			return *p
		}
		ch := make(chan struct{})
		if b.ch.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// ring wakes every waiter.
func (b *bell) ring() {
	if b.ch.Load() == nil {
		return
	}
	if p := b.ch.Swap(nil); p != nil {
		close(*p)
	}
}

// Follower pacing.
const (
	// eventPollInterval is how often a caught-up follower reads the log
	// without being woken: it finds what other coordinators sharing the
	// database committed (this one's commits wake it at once).
	eventPollInterval = 500 * time.Millisecond
	// eventReadGap is the least time between two reads of one follower.
	// Commits come in bursts of hundreds a second under load; reading at
	// most this often batches them into one read, trading a few
	// milliseconds of latency for a read per burst instead of per commit.
	eventReadGap = 20 * time.Millisecond
	// eventPage is how many log entries one read examines.
	eventPage = 500
)

// eventFollower streams the log to one subscriber.
type eventFollower struct {
	store    store.Store
	bell     *bell
	stopping <-chan struct{}
	poll     time.Duration
	gap      time.Duration
}

// run sends every event after params.After that matches params' filters,
// in log order; with follow it then waits for more until ctx ends, and
// without it returns once it has caught up.
func (f *eventFollower) run(ctx context.Context, params store.EventListParams, follow bool, send func(*store.Event) error) error {
	params.Limit = eventPage
	var poll <-chan time.Time
	if follow {
		t := time.NewTicker(f.poll)
		defer t.Stop()
		poll = t.C
	}
	for {
		wake := f.bell.wait()
		read := time.Now()
		page, err := f.store.EventList(ctx, &params)
		if err != nil {
			return err
		}
		for _, ev := range page.Events {
			if err := send(ev); err != nil {
				return err
			}
		}
		params.After = page.Next
		if page.More {
			continue
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.stopping:
			return status.Error(codes.Unavailable, "coordinator is shutting down")
		case <-wake:
		case <-poll:
		}
		if err := f.pause(ctx, f.gap-time.Since(read)); err != nil {
			return err
		}
	}
}

// pause waits d (if positive) unless ctx ends or the coordinator stops.
func (f *eventFollower) pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-f.stopping:
		return status.Error(codes.Unavailable, "coordinator is shutting down")
	case <-t.C:
		return nil
	}
}
