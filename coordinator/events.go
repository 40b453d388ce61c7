package coordinator

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

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
	// A store that reads the log's head from memory (store.MemoryTail)
	// needs no such trade: its followers read after every commit.
	eventReadGap = 20 * time.Millisecond
	// eventPage is how many log entries one read examines.
	eventPage = 500
)

// eventLog reads the store's event log for every follower of this
// coordinator. Followers read it unfiltered and filter in memory, so all
// those at the same place in the log want the same page: concurrent reads
// of one page are one store read, and a page that moved the log on is kept
// for the followers that come to it next. N subscribers then cost about one
// read of each page, not N. A page that found nothing new is never kept:
// what follows its cursor may commit at any time.
type eventLog struct {
	store store.Store
	// ctx bounds the shared reads, which outlive any one follower.
	ctx    context.Context
	flight singleflight.Group

	mu    sync.Mutex // protects pages and order
	pages map[string]*store.EventPage
	order []string // keys of pages, oldest first
}

// eventLogPages bounds the pages kept: about this many × eventPage events
// behind the newest, a follower still reads from memory.
const eventLogPages = 32

func newEventLog(ctx context.Context, st store.Store) *eventLog {
	return &eventLog{store: st, ctx: ctx, pages: map[string]*store.EventPage{}}
}

// page returns the unfiltered page of the log after the cursor, from
// memory or from one store read shared with every follower asking at once.
func (l *eventLog) page(ctx context.Context, after string) (*store.EventPage, error) {
	l.mu.Lock()
	p := l.pages[after]
	l.mu.Unlock()
	if p != nil {
		return p, nil
	}
	ch := l.flight.DoChan(after, func() (any, error) {
		p, err := l.store.EventList(l.ctx, &store.EventListParams{After: after, Limit: eventPage})
		if err == nil && p.Next != after {
			l.keep(after, p)
		}
		return p, err
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*store.EventPage), nil
	}
}

// forget drops every page kept. Another coordinator pruning a shared
// database is not seen here, so a page kept from below its floor may still
// serve a follower: it gets the events pruned since (they were real and
// are not skipped) instead of OutOfRange; within eventLogPages pages of
// the head, which retention, counted in days, never reaches in practice.
func (l *eventLog) forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.pages)
	l.order = nil
}

func (l *eventLog) keep(after string, p *store.EventPage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pages[after]; ok {
		return
	}
	l.pages[after] = p
	l.order = append(l.order, after)
	if len(l.order) > eventLogPages {
		delete(l.pages, l.order[0])
		l.order = l.order[1:]
	}
}

// eventFilter is what one subscriber keeps of the log, as
// store.EventListParams filters it.
type eventFilter struct {
	namespace, name string
	kind            store.EventKind
}

func (f eventFilter) keeps(ev *store.Event) bool {
	switch {
	case f.namespace != "" && ev.Namespace != f.namespace, f.name != "" && ev.Name != f.name:
		return false
	case f.kind == store.EventKindTask:
		return ev.Transition.StepID == ""
	case f.kind == store.EventKindStep:
		return ev.Transition.StepID != ""
	}
	return true
}

// eventFollower streams the log to one subscriber.
type eventFollower struct {
	log      *eventLog
	bell     *bell
	stopping <-chan struct{}
	poll     time.Duration
	gap      time.Duration
}

// run sends every event after params.After that matches params' filters,
// in log order; with follow it then waits for more until ctx ends, and
// without it returns once it has caught up.
func (f *eventFollower) run(ctx context.Context, params store.EventListParams, follow bool, send func(*store.Event) error) error {
	filter := eventFilter{namespace: params.Namespace, name: params.Name, kind: params.Kind}
	var poll <-chan time.Time
	if follow {
		t := time.NewTicker(f.poll)
		defer t.Stop()
		poll = t.C
	}
	for {
		wake := f.bell.wait()
		read := time.Now()
		page, err := f.log.page(ctx, params.After)
		if err != nil {
			return err
		}
		for _, ev := range page.Events {
			if !filter.keeps(ev) {
				continue
			}
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
