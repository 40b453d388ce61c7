package coordinator

import (
	"sync"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// goHolding runs settle on a goroutine of the engine's with r counted as
// held until it returns (or at once not, if the engine has stopped).
func (e *engine) goHolding(r *executorv1.StepResult, settle func()) {
	k := attemptKey{r.GetStepId(), r.GetAttempt()}
	e.held.add(k)
	if !e.bg.goFn(func() {
		defer e.held.done(k)
		settle()
	}) {
		e.held.done(k)
	}
}

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
