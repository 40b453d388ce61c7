// Package plan decides, from a snapshot of a task's steps, what happens next:
// which steps may run, when an errored step may be retried, and whether the
// task is finished. It is pure: the caller supplies the clock and the
// randomness, so every decision can be table-tested.
package plan

import (
	"math"
	"time"

	"github.com/tasker-go/tasker/state"
)

// Step is what readiness needs to know about one step of a task.
type Step struct {
	State       state.State
	Retryable   bool
	Attempts    int
	MaxAttempts int
	// NextRetryAt is when an errored step may run again; zero means at once.
	NextRetryAt time.Time
	// InFlight is true while an attempt has been sent and not yet settled.
	InFlight bool
	// Parents are indices into the task's step slice.
	Parents []int
	// Decision marks a decision step; once it is complete, Chosen lists
	// the children its result chose, sorted. Resolved manually, it takes
	// every branch unless ChoseByHand: the operator's results named
	// "next", and Chosen lists those children. See EdgeOf.
	Decision    bool
	Chosen      []int
	ChoseByHand bool
	// Instance marks an instance of a for_each step (see ForEach): its
	// one parent is that step.
	Instance bool
}

// Retriable reports whether an errored step has an attempt left. It says
// nothing about timing; see Ready.
func Retriable(s *Step) bool {
	return s.State == state.Error && s.Retryable && s.Attempts < s.MaxAttempts
}

// Exhausted reports whether a step is in error with no retry left, which
// fails its task.
func Exhausted(s *Step) bool { return s.State == state.Error && !Retriable(s) }

// Ready reports whether steps[i] may be dispatched at now: it is pending, or
// errored with an attempt left and its retry time reached; it is not in
// flight; and its parents let it start (ParentsSatisfied: none unsettled,
// and at least one branch into it taken).
func Ready(steps []Step, i int, now time.Time) bool {
	s := &steps[i]
	if s.InFlight {
		return false
	}
	switch {
	case s.State == state.Pending:
	case Retriable(s) && !now.Before(s.NextRetryAt):
	default:
		return false
	}
	return ParentsSatisfied(steps, i)
}

// Outcome is the verdict on a task as a whole.
type Outcome int

const (
	// Continue means the task is still running or waiting.
	Continue Outcome = iota
	// Complete means every step is complete, resolved manually or skipped.
	Complete
	// Fail means some step is in error with no retry left.
	Fail
)

// Verdict is the result of Evaluate.
type Verdict struct {
	Outcome Outcome
	// Ready lists the steps that may be dispatched now, in index order.
	Ready []int
	// WakeAt is the earliest future time at which an errored step becomes
	// retriable; zero if there is none.
	WakeAt time.Time
}

// Evaluate looks at every step of a task. The coordinator uses it when it
// loads a task and after operator actions; on the hot path it evaluates only
// the children of the step that changed.
func Evaluate(steps []Step, now time.Time) Verdict {
	var v Verdict
	settled := 0
	for i := range steps {
		s := &steps[i]
		switch {
		case s.State.Settled():
			settled++
		case Exhausted(s):
			v.Outcome = Fail
		case Ready(steps, i, now):
			v.Ready = append(v.Ready, i)
		case Retriable(s) && !s.InFlight && now.Before(s.NextRetryAt):
			if v.WakeAt.IsZero() || s.NextRetryAt.Before(v.WakeAt) {
				v.WakeAt = s.NextRetryAt
			}
		}
	}
	if v.Outcome == Fail {
		v.Ready, v.WakeAt = nil, time.Time{}
		return v
	}
	if settled == len(steps) {
		v.Outcome = Complete
	}
	return v
}

// Backoff is an exponential backoff policy.
type Backoff struct {
	Initial    time.Duration
	Multiplier float64
	Max        time.Duration
}

// JitterFraction is how far the exponential delay is spread either way, so
// steps that failed together do not all retry in the same instant.
const JitterFraction = 0.1

// RetryDelay is how long to wait before the next attempt after attempts
// failed ones. A delay the handler requested (e.g. from a Retry-After) wins
// as given; otherwise min(Initial × Multiplier^(attempts−1), Max), spread by
// ±JitterFraction using r, a random number in [0, 1), and never above Max.
func RetryDelay(b Backoff, attempts int, requested time.Duration, r float64) time.Duration {
	if requested > 0 {
		return requested
	}
	if attempts < 1 {
		attempts = 1
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempts-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	d *= 1 - JitterFraction + 2*JitterFraction*r
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	if d < 0 {
		d = 0
	}
	return time.Duration(d)
}
