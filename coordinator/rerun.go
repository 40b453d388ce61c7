package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// defaultActor is who a rerun records as having asked when the request
// carries no authenticated caller (security off).
const defaultActor = "operator"

// rerunStep runs a step and every step downstream of it again, keeping the
// results of all others: each finished step of that set goes back to
// pending with a fresh set of attempts, no results, no error and a new
// generation (so handlers get a new idempotency key), and a complete or
// errored task goes back to pending and on to in_progress as its steps are
// dispatched.
//
// The attempt count goes on from where it was, as after retryTask, and
// the retry limit is granted again on top of it: a result is matched to
// its attempt by (step, attempt number), and executors resend recent
// results after a broken stream, so a number used again would let a late
// copy of the previous run's result complete the new run unseen.
// The transitions record who asked (actor) and why. It is the sibling of
// retryTask and resolveStep, and like them runs on the task's owner
// (withTask takes a task nobody live owns; the server forwards otherwise).
func (e *engine) rerunStep(ctx context.Context, taskID, stepName, reason, actor string) (*snapshot, error) {
	if stepName == "" {
		return nil, invalidf("step_name is required")
	}
	if reason == "" {
		reason = "rerun by request"
	}
	if actor == "" {
		actor = defaultActor
	}
	return e.withTask(ctx, taskID, func(tr *taskRun) error {
		from, ok := tr.stepIndex(stepName)
		if !ok {
			return notFoundf("task %s has no step %q", taskID, stepName)
		}
		if state.TaskRerun(tr.task.State) == state.Refused {
			return preconditionf("task %s is %s; only a complete, errored or running task can have a step rerun", taskID, tr.task.State)
		}
		if !tr.task.State.Terminal() && tr.running > 0 {
			return preconditionf("task %s is %s with %d step(s) running; rerun once nothing runs", taskID, tr.task.State, tr.running)
		}
		set := rerunSet(tr, from)
		var reset []int
		exhausted := 0
		for _, i := range set {
			s := tr.steps[i]
			if tr.view[i].InFlight || state.StepRerun(s.State) == state.Refused {
				return preconditionf("step %q is %s; a rerun from %q waits until it is not running", s.Name, s.State, stepName)
			}
			if plan.Exhausted(&tr.view[i]) {
				exhausted++
			}
			if state.StepRerun(s.State) == state.Applied && (i == from || !slices.Contains(tr.task.BypassSteps, s.Name)) {
				reset = append(reset, i)
			}
		}
		if exhausted < tr.exhausted {
			return preconditionf("task %s has a failed step outside the rerun from %q that will not be retried; retry the task or rerun from that step", taskID, stepName)
		}
		if len(reset) == 0 && state.TaskRerun(tr.task.State) == state.NotApplied {
			return nil // nothing finished downstream: already running again
		}
		why := fmt.Sprintf("rerun from %s by %s: %s", stepName, actor, reason)
		meta, err := json.Marshal(map[string]string{"rerun_from": stepName, "actor": actor, "reason": reason})
		if err != nil {
			return fmt.Errorf("rerun metadata: %w", err)
		}
		c := e.newChange(tr)
		for _, i := range reset {
			c.rerun(i, tr.tmpl.tmpl.Steps[tr.tix(i)].RetryLimit, why, meta)
		}
		if state.TaskRerun(tr.task.State) == state.Applied {
			c.params.Task = &store.TaskChange{From: tr.task.State, To: state.Pending, Reason: why, Metadata: meta}
			tr.task.State, tr.task.UpdatedAt = state.Pending, c.params.At
		}
		if err := e.commit(ctx, c); err != nil {
			return err
		}
		next := e.newChange(tr)
		e.schedule(next, nil)
		return e.commit(ctx, next)
	})
}

// rerun records step i's reset for a rerun and applies it to memory, as
// moveStep does for the ordinary moves (which refuse a finished step going
// back to pending). The caller checked state.StepRerun.
func (c *change) rerun(i, retryLimit int, reason string, meta json.RawMessage) {
	s := c.tr.steps[i]
	limit := s.Attempts + retryLimit
	c.params.Steps = append(c.params.Steps, &store.StepChange{
		StepID: s.ID, StepName: s.Name, From: s.State, To: state.Pending,
		ExpectAttempts: s.Attempts, Attempts: s.Attempts, MaxAttempts: limit,
		Rerun: true, Reason: reason, Metadata: meta,
	})
	s.State, s.MaxAttempts, s.NextRetryAt, s.UpdatedAt = state.Pending, limit, time.Time{}, c.params.At
	s.Results, s.Error, s.blocked = nil, nil, nil
	s.Generation++
	c.tr.sync(i)
}

// rerunSet is what a rerun from step from resets: it and its descendants
// with every instance of the for_each steps among them; from an instance,
// that instance, its for_each step (which starts again, keeping its other
// instances' results) and the step's descendants.
func rerunSet(tr *taskRun, from int) []int {
	if ref, ok := tr.instanceOf(from); ok {
		return append([]int{from}, descendants(tr.tmpl.children, ref.of)...)
	}
	set := descendants(tr.tmpl.children, from)
	if tr.fanouts == nil {
		return set
	}
	return append(set, tr.instancesOf(set)...)
}

// descendants returns step from and every step reachable from it through
// children, in ascending order.
func descendants(children [][]int, from int) []int {
	seen := map[int]bool{from: true}
	queue := []int{from}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for _, ch := range children[i] {
			if !seen[ch] {
				seen[ch] = true
				queue = append(queue, ch)
			}
		}
	}
	out := make([]int, 0, len(seen))
	for i := range seen {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// idempotencyKey is what ExecuteStep carries for a handler's own side
// effects: the same for every attempt of one run of a step, new after each
// rerun (the generation counts them), and stored, so a restart keeps it.
func idempotencyKey(taskID, stepID string, generation int) string {
	return taskID + "/" + stepID + "/" + strconv.Itoa(generation)
}
