package plan

import "github.com/tasker-go/tasker/state"

// For-each steps. A step declared with for_each runs as one instance per
// item of a list computed when it starts. The step itself runs no handler:
// it moves to in_progress, its instances (steps of their own, after the
// template's) are created or reused, and it settles when they have:
//
//   - an instance may run only while its for_each step is in progress, so
//     instances reset by a rerun wait for the step to start again;
//   - the step completes when every instance of its list has settled
//     (complete or resolved manually), with their results in list order;
//   - it fails as soon as one instance is exhausted (in error with no
//     retry left): the rest cannot make the list whole;
//   - an empty list completes it at once.

// InstanceMayRun reports whether for_each instance steps[i] may start as
// far as its for_each step is concerned: the step is in progress.
func InstanceMayRun(steps []Step, i int) bool {
	return steps[steps[i].Parents[0]].State == state.InProgress
}

// ForEachOutcome is what a for_each step's instances say about it.
type ForEachOutcome int

const (
	// ForEachRunning: some instance has not settled and none is exhausted.
	ForEachRunning ForEachOutcome = iota
	// ForEachComplete: every instance settled.
	ForEachComplete
	// ForEachFailed: an instance is exhausted.
	ForEachFailed
)

// ForEach judges a for_each step from its instances (indices into steps,
// in list order): failed names the first exhausted instance, -1 if none.
func ForEach(steps []Step, instances []int) (out ForEachOutcome, failed int) {
	settled := 0
	for _, i := range instances {
		s := &steps[i]
		switch {
		case Exhausted(s):
			return ForEachFailed, i
		case s.State.Settled():
			settled++
		}
	}
	if settled == len(instances) {
		return ForEachComplete, -1
	}
	return ForEachRunning, -1
}

// Expansion is how a for_each step's list of n items maps onto the
// instances it already has (have, from an earlier start: a rerun or a
// coordinator that stopped midway): the first min(n, have) are reused,
// Create more are made, and the instances from n on are skipped.
type Expansion struct {
	Reuse, Create int
	// Skip are the indices, in the list, of instances beyond it.
	Skip []int
}

// Expand plans a for_each step's instances for a list of n items, given
// the states of the instances it has, in list order. An instance beyond
// the list is skipped if it is pending; one that ran stays as it is, as
// history (a rerun resets every instance to pending first).
func Expand(have []state.State, n int) Expansion {
	x := Expansion{Reuse: min(n, len(have)), Create: max(0, n-len(have))}
	for k := n; k < len(have); k++ {
		if have[k] == state.Pending {
			x.Skip = append(x.Skip, k)
		}
	}
	return x
}
