// Package state defines the states of tasks and steps and the transitions
// allowed between them. It is pure: no I/O, no clocks. docs/states.md
// describes the tables for people.
package state

import "fmt"

// State is the state of a task or a step.
type State string

// The states. Their string forms are what the store, the CLI and the JSON
// output use, so they must never change. The first six are shared by tasks
// and steps; Skipped is a step's only.
const (
	Pending          State = "pending"
	InProgress       State = "in_progress"
	Complete         State = "complete"
	Error            State = "error"
	Cancelled        State = "cancelled"
	ResolvedManually State = "resolved_manually"
	// Skipped is a step on a branch a decision step did not take: a
	// non-chosen child of a decision, or a step all of whose parents were
	// not taken. It ran never and never will; its task completes without it.
	Skipped State = "skipped"
)

// All lists every state in a stable order.
var All = [...]State{Pending, InProgress, Complete, Error, Cancelled, ResolvedManually, Skipped}

// TaskStates lists the states a task can be in, in the order of All: every
// state but Skipped.
var TaskStates = [...]State{Pending, InProgress, Complete, Error, Cancelled, ResolvedManually}

// Parse returns the State named s, or an error naming the valid ones.
func Parse(s string) (State, error) {
	for _, st := range All {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown state %q (want one of pending, in_progress, complete, error, cancelled, resolved_manually, skipped)", s)
}

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	_, err := Parse(string(s))
	return err == nil
}

// Satisfied reports whether a step in state s lets its children start.
// Skipped satisfies nothing: see package plan for how a child of a skipped
// step is decided.
func (s State) Satisfied() bool { return s == Complete || s == ResolvedManually }

// Settled reports whether a step in state s needs nothing more for its task
// to complete: it is satisfied, or it was skipped.
func (s State) Settled() bool { return s.Satisfied() || s == Skipped }

// Terminal reports whether a task in state s has stopped moving on its own:
// complete, error, cancelled or resolved_manually. Only an operator moves it
// on from there (retry, resolve, cancel), so watches end at these states and
// waiting for a task means waiting for one of them. A step in error is
// different: its retry policy may still move it back to pending. Skipped,
// a step's only, is terminal too: nothing moves a skipped step on.
func (s State) Terminal() bool {
	return s == Complete || s == Error || s == Cancelled || s == ResolvedManually || s == Skipped
}

// taskTransitions and stepTransitions are the tables from the design (and
// docs/states.md); they are read-only after package initialisation. A task
// is never skipped. A step is skipped only from pending: a decision settles
// before any step below it could start.
var taskTransitions = map[State][]State{
	Pending:          {InProgress, Cancelled, Error},
	InProgress:       {Complete, Error, Cancelled, Pending},
	Error:            {Pending, ResolvedManually},
	Complete:         {Cancelled},
	ResolvedManually: {Cancelled},
}

var stepTransitions = map[State][]State{
	Pending:    {InProgress, Error, Cancelled, ResolvedManually, Skipped},
	InProgress: {Complete, Error, Cancelled},
	Error:      {Pending, ResolvedManually},
}

// Outcome is the verdict on a requested transition.
type Outcome int

const (
	// Refused means the transition is not allowed from the current state.
	Refused Outcome = iota
	// Applied means the transition is allowed and changes the state.
	Applied
	// NotApplied means the thing is already in the target state: a no-op
	// that makes repeated events safe, never an error.
	NotApplied
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case NotApplied:
		return "not applied"
	default:
		return "refused"
	}
}

// TaskTransition judges moving a task from one state to another.
func TaskTransition(from, to State) Outcome { return judge(taskTransitions, from, to) }

// StepTransition judges moving a step from one state to another.
func StepTransition(from, to State) Outcome { return judge(stepTransitions, from, to) }

func judge(table map[State][]State, from, to State) Outcome {
	if from == to && from.Valid() {
		return NotApplied
	}
	for _, allowed := range table[from] {
		if allowed == to {
			return Applied
		}
	}
	return Refused
}

// TransitionError reports a refused transition.
type TransitionError struct {
	Kind     string // "task" or "step"
	Name     string // task id or step name
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("%s %s cannot go from %s to %s", e.Kind, e.Name, e.From, e.To)
}
