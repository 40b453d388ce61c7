package bench

import (
	"time"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
)

// receivedAtFunc reports when an attempt of a step first reached a handler.
type receivedAtFunc func(stepID string, attempt int) (time.Time, bool)

// dispatchOverheads measures, for every non-root step of the given finished
// tasks that a handler ran, the time from its last parent's transition to
// complete (as stamped by the coordinator) to the handler receiving the
// step's final attempt. That span is what the orchestrator adds between two
// steps: commit of the parent's result, readiness, dispatch, the network.
// Root steps have no parent transition to start from and are skipped, as
// are steps without a recorded receive (settled without running).
func dispatchOverheads(tasks []*coordinatorv1.Task, receivedAt receivedAtFunc) []time.Duration {
	var out []time.Duration
	for _, t := range tasks {
		satisfiedAt := make(map[string]time.Time, len(t.GetSteps()))
		for _, s := range t.GetSteps() {
			if at, ok := lastSatisfied(s); ok {
				satisfiedAt[s.GetName()] = at
			}
		}
		for _, s := range t.GetSteps() {
			if len(s.GetDependsOn()) == 0 || s.GetAttempts() < 1 {
				continue
			}
			ready, ok := readyAt(s, satisfiedAt)
			if !ok {
				continue
			}
			got, ok := receivedAt(s.GetId(), int(s.GetAttempts()))
			if !ok {
				continue
			}
			out = append(out, got.Sub(ready))
		}
	}
	return out
}

// readyAt is the latest of s's parents' satisfying transitions: the moment
// s became ready. ok is false if some parent never got there.
func readyAt(s *coordinatorv1.Step, satisfiedAt map[string]time.Time) (time.Time, bool) {
	var latest time.Time
	for _, p := range s.GetDependsOn() {
		at, ok := satisfiedAt[p]
		if !ok {
			return time.Time{}, false
		}
		if at.After(latest) {
			latest = at
		}
	}
	return latest, true
}

// lastSatisfied returns when s last moved to complete or resolved_manually.
func lastSatisfied(s *coordinatorv1.Step) (time.Time, bool) {
	trs := s.GetTransitions()
	for i := len(trs) - 1; i >= 0; i-- {
		if statepb.Satisfied(trs[i].GetToState()) {
			return trs[i].GetAt().AsTime(), true
		}
	}
	return time.Time{}, false
}
