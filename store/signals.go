package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/state"
)

// SignalStore keeps the signals sent to tasks (SignalTask). A signal is
// stored once and consumed at most once: by the step attempt whose
// completion, in one TaskAdvance, names it (StepChange.Signal).
type SignalStore interface {
	// SignalCreate stores a signal not yet consumed, for a step that does
	// not wait for it yet. Lease, when set, fences the write as in
	// TaskAdvance (ErrLeaseLost); an unknown task is ErrNotFound; an ID
	// stored already is ErrConflict. Nothing is written on an error.
	SignalCreate(ctx context.Context, params *SignalCreateParams) error
	// SignalList returns a task's signals in the order received (by
	// ReceivedAt, then ID); with Pending, only those not yet consumed.
	SignalList(ctx context.Context, params *SignalListParams) ([]*Signal, error)
}

// Signal is a named message sent to a task, whose payload becomes the
// result of the step that consumes it.
type Signal struct {
	ID     string
	TaskID string
	Name   string
	// Payload is JSON; nil reads as null.
	Payload    json.RawMessage
	ReceivedAt time.Time
	// ConsumedStepID and ConsumedAttempt name the step attempt that
	// consumed the signal, at ConsumedAt; empty (zero) while it waits.
	ConsumedStepID  string
	ConsumedAttempt int
	ConsumedAt      time.Time
}

// Consumed reports whether a step attempt has consumed the signal.
func (s *Signal) Consumed() bool { return s.ConsumedStepID != "" }

// SignalCreateParams are the arguments of SignalCreate.
type SignalCreateParams struct {
	// Lease, when set, fences the write (see TaskAdvanceParams.Lease).
	Lease  *Lease
	Signal *Signal
	// At is when the write is made, for the fence; zero means
	// Signal.ReceivedAt.
	At time.Time
}

// SignalListParams select SignalList's signals.
type SignalListParams struct {
	TaskID  string
	Pending bool
}

// Validate checks what every driver needs of SignalCreate's arguments.
func (p *SignalCreateParams) Validate() error {
	if p == nil || p.Signal == nil {
		return errors.New("SignalCreate: a signal is required")
	}
	return validateSignal("SignalCreate", p.Signal, false)
}

func validateSignal(op string, s *Signal, consumed bool) error {
	switch {
	case s.ID == "" || s.TaskID == "" || s.Name == "":
		return fmt.Errorf("%s: signal ID, task ID and name are required (got %q, %q, %q)", op, s.ID, s.TaskID, s.Name)
	case s.Payload != nil && !json.Valid(s.Payload):
		return fmt.Errorf("%s: signal %s: payload is not JSON", op, s.ID)
	case s.ReceivedAt.IsZero():
		return fmt.Errorf("%s: signal %s: ReceivedAt is required", op, s.ID)
	case !consumed && s.Consumed():
		return fmt.Errorf("%s: signal %s is stored unconsumed; a step change consumes it", op, s.ID)
	}
	return nil
}

// validateConsume checks a step change's consumption of a signal.
func validateConsume(taskID string, c *StepChange) error {
	s := c.Signal
	if s == nil {
		return nil
	}
	if c.To != state.Complete {
		return fmt.Errorf("TaskAdvance: step %s consumes signal %s but moves to %s, not complete", c.StepID, s.ID, c.To)
	}
	if s.TaskID != taskID {
		return fmt.Errorf("TaskAdvance: step %s of task %s consumes signal %s of task %s", c.StepID, taskID, s.ID, s.TaskID)
	}
	return validateSignal("TaskAdvance", s, true)
}
