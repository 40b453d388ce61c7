package store

import (
	"fmt"

	"github.com/tasker-go/tasker/state"
)

// TaskCountParams filters TaskCount; zero fields match all.
type TaskCountParams struct {
	Namespace string
	// Name is a template name; with Namespace empty it counts that name
	// in every namespace.
	Name string
}

// StateCount is how many tasks are in one state.
type StateCount struct {
	State state.State
	Count int64
}

// StateCounts orders per-state counts read from a database as TaskCount
// returns them: in the order of state.All, states with none left out. A
// state outside state.All means the rows hold something this version does
// not know, which is an error rather than a count to drop.
func StateCounts(counts map[string]int64) ([]StateCount, error) {
	out := make([]StateCount, 0, len(counts))
	for _, st := range state.All {
		if n := counts[string(st)]; n > 0 {
			out = append(out, StateCount{State: st, Count: n})
		}
	}
	for name := range counts {
		if !state.State(name).Valid() {
			return nil, fmt.Errorf("count tasks: unknown state %q stored", name)
		}
	}
	return out, nil
}
