package coordinator

import "sync"

// heldResults counts, by attempt, the results this coordinator received
// and has not settled yet: their commit failed and is retried (holdResult),
// or their task was not held here when they came (routeResult). While one
// is held, the attempt it answers is not failed as timed out or lost
// (failAttempt): the executor, having delivered it, no longer reports the
// attempt, so failing it would run a step again whose result is in hand.
// The zero value is ready to use.
type heldResults struct {
	mu sync.Mutex
	n  map[attemptKey]int
}

// add counts one more result held for k.
func (h *heldResults) add(k attemptKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[attemptKey]int{}
	}
	h.n[k]++
}

// done counts one result for k settled: applied, refused, or given up.
func (h *heldResults) done(k attemptKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n[k] <= 1 {
		delete(h.n, k)
		return
	}
	h.n[k]--
}

// has reports whether a result for k is held.
func (h *heldResults) has(k attemptKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[k] > 0
}

// count is how many attempts have a result held (a result passed from
// one holder to another counts once).
func (h *heldResults) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.n)
}
