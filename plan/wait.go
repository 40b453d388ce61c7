package plan

import (
	"time"

	"github.com/tasker-go/tasker/state"
)

// Stage is where a step stands on the one path from ready to running,
// which is why it waits.
type Stage int

const (
	// StageNone: the step does not wait: it runs, finished, or failed
	// with no retry left.
	StageNone Stage = iota
	// StageParents: a parent has not settled (complete, resolved, skipped).
	StageParents
	// StageBackoff: a failed attempt's retry is not due yet.
	StageBackoff
	// StageSlot: the step may run now and waits for an executor slot.
	StageSlot
)

// Wait is the stage step i is in at now, with the parents it waits for
// (StageParents, in index order) or the time its retry comes due
// (StageBackoff). It reads the same view Ready decides with, so what it
// reports cannot disagree with what the engine does.
func Wait(steps []Step, i int, now time.Time) (stage Stage, parents []int, until time.Time) {
	s := &steps[i]
	switch {
	case s.InFlight, s.State.Satisfied(), s.State == state.Cancelled, s.State == state.InProgress:
		return StageNone, nil, time.Time{}
	case s.State == state.Error && !Retriable(s):
		return StageNone, nil, time.Time{}
	case s.State != state.Pending && s.State != state.Error:
		return StageNone, nil, time.Time{}
	}
	for _, p := range s.Parents {
		if EdgeOf(steps, p, i) == EdgeOpen {
			parents = append(parents, p)
		}
	}
	if len(parents) > 0 {
		return StageParents, parents, time.Time{}
	}
	if NotTaken(steps, i) {
		return StageNone, nil, time.Time{} // on no branch taken: it is skipped, not run
	}
	if s.State == state.Error && now.Before(s.NextRetryAt) {
		return StageBackoff, nil, s.NextRetryAt
	}
	return StageSlot, nil, time.Time{}
}
