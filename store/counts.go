package store

import (
	"fmt"
	"time"

	"github.com/tasker-go/tasker/state"
)

// TaskCountParams filters TaskCount; zero fields match all.
type TaskCountParams struct {
	Namespace string
	// Name is a template name; with Namespace empty it counts that name
	// in every namespace.
	Name string

	// The rest narrow the count as the fields of the same names narrow
	// TaskList, so a page of tasks and its counts agree. No index holds
	// them beside the state: a count that uses any reads the row of each
	// task the other bounds leave (the ids' range, the key's one or two).
	FromID, BeforeID            string
	CreatedAfter, CreatedBefore time.Time
	Key                         string
	Context                     []ContextMatch
}

// ReadsRows reports whether a filter beyond namespace and name is set, so
// the count cannot be answered from an index of states alone.
func (p *TaskCountParams) ReadsRows() bool {
	return p.FromID != "" || p.BeforeID != "" || !p.CreatedAfter.IsZero() || !p.CreatedBefore.IsZero() ||
		p.Key != "" || len(p.Context) > 0
}

// List is the TaskListParams that selects the tasks p counts, in every
// state and without a limit of its own.
func (p *TaskCountParams) List() *TaskListParams {
	return &TaskListParams{
		Namespace: p.Namespace, Name: p.Name, FromID: p.FromID, BeforeID: p.BeforeID,
		CreatedAfter: p.CreatedAfter, CreatedBefore: p.CreatedBefore, Key: p.Key, Context: p.Context,
	}
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
