// Package statepb maps the states of package state to the API's State enum
// and back, so the coordinator, the CLI and bench share one mapping and one
// spelling of every state.
package statepb

import (
	"fmt"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state"
)

// ToProto returns the enum value of s; a string that is not one of the
// states gives STATE_UNSPECIFIED.
func ToProto(s state.State) coordinatorv1.State {
	switch s {
	case state.Pending:
		return coordinatorv1.State_STATE_PENDING
	case state.InProgress:
		return coordinatorv1.State_STATE_IN_PROGRESS
	case state.Complete:
		return coordinatorv1.State_STATE_COMPLETE
	case state.Error:
		return coordinatorv1.State_STATE_ERROR
	case state.Cancelled:
		return coordinatorv1.State_STATE_CANCELLED
	case state.ResolvedManually:
		return coordinatorv1.State_STATE_RESOLVED_MANUALLY
	case state.Skipped:
		return coordinatorv1.State_STATE_SKIPPED
	default:
		return coordinatorv1.State_STATE_UNSPECIFIED
	}
}

// FromProto returns the state p stands for. ok is false for
// STATE_UNSPECIFIED and for values this build does not know (a newer
// coordinator's), which callers must not guess at.
func FromProto(p coordinatorv1.State) (s state.State, ok bool) {
	switch p {
	case coordinatorv1.State_STATE_PENDING:
		return state.Pending, true
	case coordinatorv1.State_STATE_IN_PROGRESS:
		return state.InProgress, true
	case coordinatorv1.State_STATE_COMPLETE:
		return state.Complete, true
	case coordinatorv1.State_STATE_ERROR:
		return state.Error, true
	case coordinatorv1.State_STATE_CANCELLED:
		return state.Cancelled, true
	case coordinatorv1.State_STATE_RESOLVED_MANUALLY:
		return state.ResolvedManually, true
	case coordinatorv1.State_STATE_SKIPPED:
		return state.Skipped, true
	default:
		return "", false
	}
}

// Name is the lower-case name of p used in every output ("in_progress"):
// "" for STATE_UNSPECIFIED and "unknown(N)" for a value this build does not
// know, so output never hides what the coordinator sent.
func Name(p coordinatorv1.State) string {
	if s, ok := FromProto(p); ok {
		return string(s)
	}
	if p == coordinatorv1.State_STATE_UNSPECIFIED {
		return ""
	}
	return fmt.Sprintf("unknown(%d)", int32(p))
}

// Parse maps a state name to its enum value; "" gives STATE_UNSPECIFIED (a
// filter meaning any state). An unknown name is an error listing the valid
// ones.
func Parse(name string) (coordinatorv1.State, error) {
	if name == "" {
		return coordinatorv1.State_STATE_UNSPECIFIED, nil
	}
	s, err := state.Parse(name)
	if err != nil {
		return coordinatorv1.State_STATE_UNSPECIFIED, err
	}
	return ToProto(s), nil
}

// Terminal reports whether a task in p has stopped moving on its own (see
// state.State.Terminal); unknown values are not terminal.
func Terminal(p coordinatorv1.State) bool {
	s, ok := FromProto(p)
	return ok && s.Terminal()
}

// Satisfied reports whether a step in p lets its children start (see
// state.State.Satisfied).
func Satisfied(p coordinatorv1.State) bool {
	s, ok := FromProto(p)
	return ok && s.Satisfied()
}

// Settled reports whether a step in p needs nothing more for its task to
// complete (see state.State.Settled): complete, resolved manually or
// skipped.
func Settled(p coordinatorv1.State) bool {
	s, ok := FromProto(p)
	return ok && s.Settled()
}
