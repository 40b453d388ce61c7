package coordinator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/uuid"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// For-each steps (plan/foreach.go has the rules). A for_each step runs no
// handler itself. When it is ready it starts an attempt of its own: it
// moves to in_progress, then its list is computed from its parents'
// results and the context, and its instances are stored as steps of the
// task (named "step[index]", after the template's steps) in the same
// commit that dispatches the first of them. Each instance runs the step's
// handler with its item and is retried on its own; the commit that
// settles the last one completes the step with their results as a list,
// in order; an exhausted instance fails the step.
//
// Nothing about it lives only in memory: the list is computed again from
// stored results when a task is loaded, and the instances are stored rows.
// A coordinator that stopped between the step's start and its instances
// (a start in the task's first dispatch is committed before the instances
// are made) finds the step in progress without them and makes them then.

// fanout is a for_each step's memory in a task run. Guarded by the run's
// mu.
type fanout struct {
	// instances are the step indices of its instances, by list index; the
	// current start uses the first len(items).
	instances []int
	// items is the current start's list; expanded says it and the
	// instances are in place (false until the step's start is expanded in
	// this memory).
	items    []json.RawMessage
	expanded bool
	// settled and exhausted count the current list's instances that are
	// settled and exhausted, so settling one is O(1).
	settled, exhausted int
}

// instanceRef says which for_each step an instance belongs to (of, a
// step index) and its place in the list.
type instanceRef struct {
	of, index int
}

// initFanouts gives each for_each step of the template its memory.
func (tr *taskRun) initFanouts() {
	for i, p := range tr.tmpl.forEach {
		if p == nil {
			continue
		}
		if tr.fanouts == nil {
			tr.fanouts = map[int]*fanout{}
		}
		tr.fanouts[i] = &fanout{}
	}
}

// placeInstance registers a stored instance row at step index at and
// reports whether the row is an instance of one of the template's
// for_each steps.
func (tr *taskRun) placeInstance(s *store.Step, at int) (int, bool) {
	name, k, ok := template.ParseInstanceName(s.Name)
	if !ok {
		return 0, false
	}
	of, ok := tr.tmpl.index[name]
	fo := tr.fanouts[of]
	if !ok || fo == nil {
		return 0, false
	}
	for len(fo.instances) <= k {
		fo.instances = append(fo.instances, -1)
	}
	fo.instances[k] = at
	tr.instances = append(tr.instances, instanceRef{of: of, index: k})
	return at, true
}

// tix is the template index of step i: its own, or for an instance its
// for_each step's, whose handler, settings and parents it shares.
func (tr *taskRun) tix(i int) int {
	if n := len(tr.tmpl.tmpl.Steps); i >= n {
		return tr.instances[i-n].of
	}
	return i
}

// instanceOf is the for_each step and list index of step i, if it is an
// instance.
func (tr *taskRun) instanceOf(i int) (instanceRef, bool) {
	if n := len(tr.tmpl.tmpl.Steps); i >= n {
		return tr.instances[i-n], true
	}
	return instanceRef{}, false
}

// childrenOf are the steps whose readiness step i's settling may change:
// its template children; none for an instance (its for_each step settles
// through gatherForEach), as an empty list: nil makes schedule look at
// every step, as it does after a leaf of the template settles.
func (tr *taskRun) childrenOf(i int) []int {
	if _, ok := tr.instanceOf(i); ok {
		return []int{}
	}
	return tr.tmpl.children[i]
}

// stepIndex finds a step by name: a template step or an instance
// ("charge[3]").
func (tr *taskRun) stepIndex(name string) (int, bool) {
	if i, ok := tr.tmpl.index[name]; ok {
		return i, true
	}
	step, k, ok := template.ParseInstanceName(name)
	if !ok {
		return 0, false
	}
	fo := tr.fanouts[tr.tmpl.index[step]]
	if fo == nil || k >= len(fo.instances) || fo.instances[k] < 0 {
		return 0, false
	}
	return fo.instances[k], true
}

// isForEach reports whether step i is a for_each step (not an instance).
func (tr *taskRun) isForEach(i int) bool {
	_, ok := tr.fanouts[i]
	return ok
}

// countInstance keeps the for_each counters as instance i moves from a
// state (wasSettled, wasExhausted) to its current one. Called by sync.
func (tr *taskRun) countInstance(i int, wasSettled, wasExhausted bool) {
	ref, ok := tr.instanceOf(i)
	if !ok {
		return
	}
	fo := tr.fanouts[ref.of]
	if !fo.expanded || ref.index >= len(fo.items) {
		return
	}
	v := &tr.view[i]
	fo.settled += b2i(v.State.Settled()) - b2i(wasSettled)
	fo.exhausted += b2i(plan.Exhausted(v)) - b2i(wasExhausted)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// startForEach starts for_each step i's next attempt instead of
// dispatching it: the step moves to in_progress, then its instances are
// made (expandForEach). In a task's first dispatch, which may hang on an
// admission, the instances wait for the commit: the wake that follows it
// makes them. The caller holds tr.mu; tryDispatch checked readiness.
func (e *engine) startForEach(c *change, i int) {
	tr, s := c.tr, c.tr.steps[i]
	e.beginOwnAttempt(c, i)
	c.moveStep(i, state.InProgress, fmt.Sprintf("attempt %d starts an instance for each item of %s", s.Attempts+1, tr.tmpl.tmpl.Steps[i].ForEach),
		func(sc *store.StepChange) { sc.Attempts = s.Attempts + 1 })
	fo := tr.fanouts[i]
	fo.expanded, fo.items = false, nil
	if !c.startsTask() { // else the wake after this commit expands it (expandPending)
		e.expandForEach(c, i)
	}
}

// expandPending expands every for_each step in progress whose instances
// are not in place in memory: after a load, or a start in the task's
// first dispatch. The caller holds tr.mu.
func (e *engine) expandPending(c *change) {
	tr := c.tr
	if tr.task.State != state.InProgress || c.startsTask() {
		return // a start in the task's first dispatch expands after its commit
	}
	for i, fo := range tr.fanouts {
		if !fo.expanded && tr.steps[i].State == state.InProgress {
			e.expandForEach(c, i)
		}
	}
}

// startsTask reports whether c holds the task's first move to in_progress:
// a creation's dispatch, or one that may hang on the task's admission.
// Instances are never made in such a change: its write may be refused
// whole (then memory goes back to the steps as they were), and a creation
// stores the steps it started with.
func (c *change) startsTask() bool {
	return c.params.Task != nil && c.params.Task.From == state.Pending && c.params.Task.To == state.InProgress
}

// unexpanded reports whether a for_each step waits for its instances to
// be made, so the task must wake at once.
func (tr *taskRun) unexpanded() bool {
	if tr.task.State != state.InProgress {
		return false
	}
	for i, fo := range tr.fanouts {
		if !fo.expanded && tr.steps[i].State == state.InProgress {
			return true
		}
	}
	return false
}

// expandForEach computes for_each step i's list and puts its instances in
// place: reused from an earlier start, made (stored with this change), or
// skipped when beyond the list; then dispatches them. A list that cannot
// be computed, or is longer than the step limit, fails the step
// permanently: the same results give the same list. The caller holds
// tr.mu; step i is in progress.
func (e *engine) expandForEach(c *change, i int) {
	tr, fo := c.tr, c.tr.fanouts[i]
	name := tr.tmpl.tmpl.Steps[i].Name
	items, err := tr.tmpl.forEach[i].Items(tr.task.Context, tr.parentResults(i))
	if err == nil && len(items) > e.maxInstances() {
		err = fmt.Errorf("for_each %s gave %d items, over the limit of %d instances (max_steps)", tr.tmpl.tmpl.Steps[i].ForEach, len(items), e.maxInstances())
	}
	if err != nil {
		fo.expanded = true
		e.failStep(c, i, &store.StepError{Message: err.Error(), Class: "InvalidForEach"}, 0, "")
		return
	}
	have := make([]state.State, len(fo.instances))
	for k, j := range fo.instances {
		have[k] = state.Pending
		if j >= 0 {
			have[k] = tr.steps[j].State
		}
	}
	x := plan.Expand(have, len(items))
	for _, k := range x.Skip {
		if j := fo.instances[k]; j >= 0 {
			c.moveStep(j, state.Skipped, fmt.Sprintf("beyond the %d items of %s's list this run", len(items), name), nil)
		}
	}
	for k := range items {
		if k < len(fo.instances) && fo.instances[k] >= 0 {
			continue
		}
		e.addInstance(c, i, k)
	}
	fo.items, fo.expanded = items, true
	fo.settled, fo.exhausted = 0, 0
	list := fo.instances[:len(items)]
	for _, j := range list {
		fo.settled += b2i(tr.view[j].State.Settled())
		fo.exhausted += b2i(plan.Exhausted(&tr.view[j]))
	}
	c.gather = append(c.gather, i)
	now := c.params.At
	if next := e.gatherForEach(c); tr.steps[i].State != state.InProgress {
		// An empty list, or every instance done before: the step settled
		// here, after schedule judged the task, so judge it again (a
		// for_each step at the end completes the task).
		e.schedule(c, next)
		return
	}
	for _, j := range list {
		e.tryDispatch(c, j, now)
	}
}

// addInstance makes the k-th instance of for_each step i: a fresh step of
// the task, stored by this change.
func (e *engine) addInstance(c *change, i, k int) {
	tr, fo := c.tr, c.tr.fanouts[i]
	st := &tr.tmpl.tmpl.Steps[i]
	row := store.Step{
		ID: uuid.Must(uuid.NewV7()).String(), TaskID: tr.task.ID, Name: template.InstanceName(st.Name, k),
		Position: tr.nextPosition, Handler: st.Handler, State: state.Pending,
		MaxAttempts: st.RetryLimit, Retryable: st.IsRetryable(), UpdatedAt: c.params.At,
	}
	tr.nextPosition++
	j := len(tr.steps)
	tr.steps = append(tr.steps, &stepRun{Step: row})
	tr.view = append(tr.view, plan.Step{Parents: []int{i}, Instance: true})
	tr.instances = append(tr.instances, instanceRef{of: i, index: k})
	tr.byID[row.ID] = j
	for len(fo.instances) <= k {
		fo.instances = append(fo.instances, -1)
	}
	fo.instances[k] = j
	tr.sync(j)
	stored := row
	c.params.NewSteps = append(c.params.NewSteps, &stored)
}

// maxInstances bounds a for_each step's list: the step limit, as for a
// template's steps.
func (e *engine) maxInstances() int {
	if e.limits.MaxSteps > 0 {
		return e.limits.MaxSteps
	}
	return template.DefaultMaxSteps
}

// gatherForEach settles the for_each steps whose instances moved in this
// change (c.gather): failed when one is exhausted, complete with their
// results when all settled. It returns the steps whose readiness that may
// change. The caller holds tr.mu.
func (e *engine) gatherForEach(c *change) []int {
	tr := c.tr
	var cands []int
	for len(c.gather) > 0 {
		i := c.gather[0]
		c.gather = c.gather[1:]
		fo, s := tr.fanouts[i], tr.steps[i]
		if s.State != state.InProgress || !fo.expanded {
			continue
		}
		list := fo.instances[:len(fo.items)]
		switch {
		case fo.exhausted > 0:
			_, failed := plan.ForEach(tr.view, list)
			fs := tr.steps[failed]
			msg := "failed"
			if fs.Error != nil {
				msg = fs.Error.Message
			}
			e.failStep(c, i, &store.StepError{
				Message: fmt.Sprintf("instance %s failed and will not be retried: %s", fs.Name, msg),
				Class:   classInstanceFailed,
			}, 0, "")
		case fo.settled == len(list):
			results, err := instanceResults(tr, list, e.limits.MaxResultBytes)
			if err != nil {
				e.failStep(c, i, &store.StepError{Message: err.Error(), Class: "ResultTooLarge"}, 0, "")
				continue
			}
			c.moveStep(i, state.Complete, fmt.Sprintf("attempt %d: all %d instances complete", s.Attempts, len(list)),
				func(sc *store.StepChange) { sc.Results = results })
			cands = append(cands, e.skipUntaken(c, tr.childrenOf(i))...)
		}
	}
	return cands
}

// classInstanceFailed is the error class of a for_each step failed by an
// exhausted instance.
const classInstanceFailed = "InstanceFailed"

// reopenForEach resumes for_each step of, failed by an exhausted instance,
// once an operator has resolved the last of its exhausted instances (the
// caller just did one): a failed step resolved by hand lets its task go
// on, and an instance's failure should not need a task retry on top. The
// step goes back to pending with one more attempt; started again, it keeps
// its settled instances (the resolved ones' results take their places),
// runs those still pending, and completes once all are settled. It reports
// whether it moved the step. The caller holds tr.mu.
func (e *engine) reopenForEach(c *change, of int, resolved string) bool {
	tr := c.tr
	s := tr.steps[of]
	if s.State != state.Error || s.Error == nil || s.Error.Class != classInstanceFailed {
		return false
	}
	for _, j := range tr.fanouts[of].instances {
		if j >= 0 && plan.Exhausted(&tr.view[j]) {
			return false
		}
	}
	c.moveStep(of, state.Pending, "resumed after "+resolved+" was resolved manually", func(sc *store.StepChange) {
		sc.MaxAttempts = s.Attempts + 1
		sc.NextRetryAt = c.params.At
	})
	return true
}

// instanceResults joins the instances' results into one JSON list, in
// list order; an instance resolved manually without results gives null.
func instanceResults(tr *taskRun, list []int, limit int) (json.RawMessage, error) {
	size := 2
	for _, j := range list {
		size += len(tr.steps[j].Results) + 1
	}
	if limit > 0 && size > limit {
		return nil, fmt.Errorf("the %d instances' results are %d bytes together, over the limit of %d bytes (max_result_bytes)", len(list), size, limit)
	}
	var b bytes.Buffer
	b.Grow(size)
	b.WriteByte('[')
	for k, j := range list {
		if k > 0 {
			b.WriteByte(',')
		}
		if r := tr.steps[j].Results; len(r) > 0 {
			b.Write(r)
		} else {
			b.WriteString("null")
		}
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// endForEach stops the for_each steps in progress of a task that failed,
// as endWaits does for waits: their instances will not be dispatched, so
// they would stay in progress for nothing. A retry of the task starts them
// again, keeping the instances that completed.
func (e *engine) endForEach(c *change, reason string) {
	tr := c.tr
	for i := range tr.fanouts {
		s := tr.steps[i]
		if s.State != state.InProgress {
			continue
		}
		c.moveStep(i, state.Error, fmt.Sprintf("attempt %d stopped: %s", s.Attempts, reason), func(sc *store.StepChange) {
			sc.Error = &store.StepError{Message: reason, Class: "TaskFailed", Retryable: true}
		})
	}
}

// forEachItem is what an instance's request carries about its item.
func forEachItem(tr *taskRun, i int) *executorv1.ForEachItem {
	ref, ok := tr.instanceOf(i)
	if !ok {
		return nil
	}
	fo := tr.fanouts[ref.of]
	item := json.RawMessage("null")
	if ref.index < len(fo.items) {
		item = fo.items[ref.index]
	}
	return &executorv1.ForEachItem{Index: int32(ref.index), Item: item, Count: int32(len(fo.items))}
}

// instancesOf lists the instances of the for_each steps among steps.
func (tr *taskRun) instancesOf(steps []int) []int {
	var out []int
	for _, i := range steps {
		if fo := tr.fanouts[i]; fo != nil {
			for _, j := range fo.instances {
				if j >= 0 {
					out = append(out, j)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
