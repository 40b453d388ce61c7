package coordinator

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-go/tasker/store"
)

// A store that refuses writes for want of room or of a connection still
// answers reads and, often, the lease's small renewals (a full SQLite disk
// lets writes through while they fit the log's existing room), so Ready's
// read and lease checks pass while every create fails. writeHealth watches
// the writes that carry work (task creations and advances) instead.
const (
	// writeFailingFor is how long writes must have failed, none succeeding
	// in between, before Ready refuses: one refused write (a serialization
	// failure between coordinators, a busy moment) is not an outage.
	writeFailingFor = time.Second
	// writeFailureFresh is how long the last failure counts: with no work
	// written since, nothing says the store is still refusing.
	writeFailureFresh = 15 * time.Second
)

// writeHealth records the outcomes of the coordinator's work writes. The
// zero value is ready to use.
type writeHealth struct {
	// failing is set while since is: every write observes, so a success
	// with nothing to clear takes no lock.
	failing atomic.Bool
	mu      sync.Mutex
	// since is the first of the failures since the last success (zero:
	// none); last is the newest and err its error.
	since, last time.Time
	err         error
}

// observe records one write's outcome at now. Only success and the
// store's own unavailability count: a refusal (a conflict, a lost lease,
// bad input) says nothing about whether the store can write.
func (h *writeHealth) observe(now time.Time, err error) {
	if err == nil && !h.failing.Load() || err != nil && !errors.Is(err, store.ErrUnavailable) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.since, h.last, h.err = time.Time{}, time.Time{}, nil
		h.failing.Store(false)
		return
	}
	if h.since.IsZero() {
		h.since = now
		h.failing.Store(true)
	}
	h.last, h.err = now, err
}

// check returns an error when writes have failed for at least
// writeFailingFor with none succeeding since, the last of them within
// writeFailureFresh of now.
func (h *writeHealth) check(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() || now.Sub(h.since) < writeFailingFor || now.Sub(h.last) > writeFailureFresh {
		return nil
	}
	return fmt.Errorf("the store has refused every write for %s (the last %s ago): %w",
		h.last.Sub(h.since).Round(time.Millisecond), now.Sub(h.last).Round(time.Millisecond), h.err)
}
