package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/expr"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// Child tasks: a step declared with task: runs a task of another template,
// its child, instead of a handler. Like a durable wait (waits.go) it is an
// attempt with no executor: once ready, the step moves to in_progress,
// holding no slot, and that move is committed before the child exists.
// Only then is the child created, through the same path as CreateTask
// (schema, limits, flow control), with an idempotency key made of the
// parent task, the step, its generation and its attempt
// (childKey). So a crash between the two, or a second attempt at the
// creation, finds the child the first made; and a retry or a rerun of the
// step, being a new attempt, makes a new child.
//
// Nothing about the child lives only in memory. The step's child is
// found again by its key; a coordinator that loads the parent (restart,
// take-over, repair) looks at the child of every child step in progress:
// missing, it is created; finished, the step is settled. While the step
// waits, that look is taken again every childRecheck, in case the notice
// below was lost.
//
// When a child finishes (complete, error, cancelled), the coordinator that
// committed that move tells the parent's owner at once: itself, or
// another coordinator, through ReportStepResult forwarded there, which
// only makes the owner look at the child (the report's content is never
// trusted). The step then completes with the child's results, an object of
// the child's settled steps' results by step name, or fails with class
// ChildTaskFailed (ChildTaskCancelled) under its retry policy.
//
// Cancelling the parent cancels its running children, and a parent that
// fails cancels them too, each once its own move is committed.

// waitChild is the waiting reason of a step whose child task runs.
const waitChild = "child_task"

// childWaitReason is why child step i, in progress, waits: for its child,
// the key naming the child's template as the step gives it.
func childWaitReason(tr *taskRun, i int) *waitReason {
	return &waitReason{reason: waitChild, key: childSpec(tr, i).Task}
}

// childRecheck is how often a coordinator looks at the child of a step it
// waits on, in case the notice of the child's end was lost (the child's
// coordinator died between its commit and the notice). Shorter notices a
// lost end sooner, for one read per waiting step each time.
const childRecheck = 10 * time.Second

// Error classes of a child step's failed attempts.
const (
	childFailedClass    = "ChildTaskFailed"
	childCancelledClass = "ChildTaskCancelled"
	childRefusedClass   = "ChildTaskRefused"
	childContextClass   = "ChildContextInvalid"
)

// childSpec is step i's template if it runs a child task, else nil.
func childSpec(tr *taskRun, i int) *template.Step {
	st := &tr.tmpl.tmpl.Steps[tr.tix(i)]
	if !st.IsChild() {
		return nil
	}
	return st
}

// childRunning reports whether step i runs a child task and has an attempt
// in progress.
func (tr *taskRun) childRunning(i int) bool {
	return tr.steps[i].State == state.InProgress && tr.tmpl.tmpl.Steps[tr.tix(i)].IsChild()
}

// childKey is the idempotency key (and so the identity) of the child task
// of one attempt of one run of a step: the same however often the
// creation is tried, new for the next attempt or after a rerun.
func childKey(parentID, stepID string, generation, attempt int) string {
	return fmt.Sprintf("child:%s/%s/%d/%d", parentID, stepID, generation, attempt)
}

// childRef is one child step attempt, as read under the parent's lock, for
// the work done without it (reads, the child's creation).
type childRef struct {
	// run is the parent's run the attempt was read from.
	run                        *taskRun
	parentID, stepID, stepName string
	attempt                    int
	key                        string
	ref                        template.TaskRef
	context                    json.RawMessage
	// contextErr is why the child's context could not be built.
	contextErr error
}

// childContext builds the context of step i's child from its context
// expressions over the task's context and the step's parents' results;
// without expressions it is an empty object. Field order is the encoder's
// (sorted), so the same inputs always give the same bytes.
func childContext(tr *taskRun, i int) (json.RawMessage, error) {
	t := tr.tix(i) // a child step is never a for_each instance (template validation); t is i
	progs := tr.tmpl.tmpl.Steps[t].TaskContext
	if len(progs) == 0 {
		return json.RawMessage("{}"), nil
	}
	in, err := expr.ParseInputs(tr.task.Context, tr.parentResults(t))
	if err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(progs))
	for field, src := range progs {
		// Compiled at registration already; compiling here again costs
		// microseconds once per attempt and keeps compiledTemplate as it is.
		p, err := expr.CompileValue(src)
		if err != nil {
			return nil, fmt.Errorf("context.%s: %w", field, err)
		}
		v, err := p.Eval(in)
		if err != nil {
			return nil, fmt.Errorf("context.%s: %w", field, err)
		}
		out[field] = v
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode child context: %w", err)
	}
	return raw, nil
}

// startChild starts step i's attempt instead of dispatching it: the step
// moves to in_progress with no executor, and once that is committed the
// child is created (superviseChild, run by a timer that takes the task's
// lock, so never before the commit). A context that cannot be built fails
// the attempt permanently in the same change: the same inputs would fail
// again. The caller holds tr.mu; tryDispatch checked readiness.
func (e *engine) startChild(c *change, i int, _ time.Time) {
	tr, s, st := c.tr, c.tr.steps[i], childSpec(c.tr, i)
	e.beginOwnAttempt(c, i)
	attempt := s.Attempts + 1
	key := childKey(tr.task.ID, s.ID, s.Generation, attempt)
	meta, _ := json.Marshal(map[string]string{"child_task": st.Task, "child_key": key})
	c.moveStep(i, state.InProgress, fmt.Sprintf("attempt %d runs child task %s", attempt, st.Task), func(sc *store.StepChange) {
		sc.Attempts = attempt
		sc.Metadata = meta
	})
	tr.setInFlight(i, true)
	if _, err := childContext(tr, i); err != nil {
		e.settleAttempt(tr, i, err.Error())
		e.failStep(c, i, &store.StepError{Message: "child task context: " + err.Error(), Class: childContextClass}, 0, "")
		return
	}
	e.watchChild(tr, i, 0)
}

// watchChild arms step i's timer to look at its child after d. The timer
// is the attempt's own (settleAttempt and retire stop it), and its
// callback takes the task's lock, so it acts only on what is committed.
// It holds the run itself, not its id: a run being created is not
// registered yet when its first step starts. The caller holds tr.mu.
func (e *engine) watchChild(tr *taskRun, i int, d time.Duration) {
	s := tr.steps[i]
	if s.timer != nil {
		s.timer.Stop()
	}
	stepID, attempt := s.ID, s.Attempts
	s.timer = e.bg.afterFunc(d, func() { e.superviseChild(tr, stepID, attempt) })
}

// superviseChild looks at the child of one step attempt: it creates the
// child if it is missing and settles the step if the child finished. It
// arms the next look first, so a failure here is retried.
func (e *engine) superviseChild(tr *taskRun, stepID string, attempt int) {
	tr.mu.Lock()
	ref := e.childRefOf(tr, stepID, attempt)
	if ref != nil {
		e.watchChild(tr, tr.byID[stepID], e.childRecheck)
	}
	tr.mu.Unlock()
	if ref == nil {
		return
	}
	e.ensureChild(e.ctx, ref)
}

// childRefOf is the child step attempt named, if the run still has it in
// progress (nil otherwise: settled, replaced by a later attempt, or the
// run is being rebuilt). The caller holds tr.mu.
func (e *engine) childRefOf(tr *taskRun, stepID string, attempt int) *childRef {
	i, ok := tr.byID[stepID]
	if !ok || tr.done || tr.broken || !tr.childRunning(i) {
		return nil
	}
	s := tr.steps[i]
	if attempt > 0 && s.Attempts != attempt {
		return nil
	}
	ref, _ := template.ParseTaskRef(childSpec(tr, i).Task) // validated at registration
	r := &childRef{
		run: tr, parentID: tr.task.ID, stepID: s.ID, stepName: s.Name, attempt: s.Attempts,
		key: childKey(tr.task.ID, s.ID, s.Generation, s.Attempts), ref: ref,
	}
	r.context, r.contextErr = childContext(tr, i)
	return r
}

// findChild reads the child task with the given key; nil if there is none.
func (e *engine) findChild(ctx context.Context, key string) (*store.Task, error) {
	got, err := e.store.TaskList(ctx, &store.TaskListParams{Key: key, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("find child task %s: %w", key, err)
	}
	if len(got) == 0 {
		return nil, nil
	}
	return got[0], nil
}

// ensureChild creates ref's child if it does not exist yet and settles
// ref's step if the child has finished. Errors that may pass (the store
// busy, the coordinator draining) are logged and left to the next look;
// a creation the child's template refuses (its context fails the schema,
// the template is gone, a limit) fails the step for good, since asking
// again would be refused again.
func (e *engine) ensureChild(ctx context.Context, ref *childRef) {
	if ref.contextErr != nil {
		e.settleChild(ctx, ref, nil, &store.StepError{Message: "child task context: " + ref.contextErr.Error(), Class: childContextClass})
		return
	}
	child, err := e.findChild(ctx, ref.key)
	if err != nil {
		e.log.Warn("could not look for a child task; will look again", "task_id", ref.parentID, "step", ref.stepName, "err", err)
		return
	}
	if child == nil {
		v, _, err := e.createTask(ctx, &createParams{
			namespace: ref.ref.Namespace, name: ref.ref.Name, version: ref.ref.Version,
			context: ref.context, idempotencyKey: ref.key,
			parentTaskID: ref.parentID, parentStepID: ref.stepID,
		})
		switch {
		case err == nil:
			child = v.task
			e.log.Info("created child task", "task_id", ref.parentID, "step", ref.stepName, "attempt", ref.attempt, "child_task_id", child.ID)
			if !e.childWanted(ctx, ref) {
				// The parent was cancelled (or failed) while the child was
				// being created: its cancel found no child to cancel.
				e.cancelChild(ctx, ref.parentID, ref.key, fmt.Sprintf("parent task %s no longer waits for it (step %s ended)", ref.parentID, ref.stepName))
				return
			}
		case childRefused(err):
			e.settleChild(ctx, ref, nil, &store.StepError{
				Message: fmt.Sprintf("child task %s refused: %s", ref.ref, status.Convert(toStatus(err)).Message()),
				Class:   childRefusedClass,
			})
			return
		default:
			e.log.Warn("could not create a child task; will try again", "task_id", ref.parentID, "step", ref.stepName, "err", err)
			return
		}
	}
	if childEnded(child.State) {
		e.settleChild(ctx, ref, child, nil)
	}
}

// childWanted reports whether ref's attempt still waits for its child: in
// the run it was read from, or, if that run was dropped or is being
// rebuilt, in the store. A read that fails counts as wanted; the owner's
// next look settles the step either way.
func (e *engine) childWanted(ctx context.Context, ref *childRef) bool {
	tr := ref.run
	tr.mu.Lock()
	if !tr.done && !tr.broken {
		i, ok := tr.byID[ref.stepID]
		wanted := ok && tr.childRunning(i) && tr.steps[i].Attempts == ref.attempt
		tr.mu.Unlock()
		return wanted
	}
	tr.mu.Unlock()
	steps, err := e.store.StepList(ctx, ref.parentID)
	if err != nil {
		return true
	}
	i := slices.IndexFunc(steps, func(s *store.Step) bool { return s.ID == ref.stepID })
	return i >= 0 && steps[i].State == state.InProgress && steps[i].Attempts == ref.attempt
}

// childRefused reports whether a creation was refused for what it asked,
// not for a passing condition.
func childRefused(err error) bool {
	switch status.Code(toStatus(err)) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.ResourceExhausted, codes.AlreadyExists:
		return true
	}
	return false
}

// childEnded reports whether a child in state s has ended as far as its
// parent's step is concerned.
func childEnded(s state.State) bool {
	return s == state.Complete || s == state.Error || s == state.Cancelled || s == state.ResolvedManually
}

// childResults is what a completed child gives its parent's step: the
// results of each of its settled steps by name (null for one resolved
// manually without results; skipped steps left out).
func childResults(steps []*store.Step) (json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(steps))
	for _, s := range steps {
		if s.State != state.Complete && s.State != state.ResolvedManually {
			continue
		}
		r := s.Results
		if len(r) == 0 {
			r = json.RawMessage("null")
		}
		out[s.Name] = r
	}
	return json.Marshal(out)
}

// settleChild ends ref's step attempt: with the child's results when it
// completed, or failed (fail, or the child's error or cancellation) under
// the step's retry policy. It acts only if the attempt is still in
// progress, so a second notice of the same end changes nothing.
func (e *engine) settleChild(ctx context.Context, ref *childRef, child *store.Task, fail *store.StepError) {
	var results json.RawMessage
	if child != nil && (child.State == state.Complete || child.State == state.ResolvedManually) {
		steps, err := e.store.StepList(ctx, child.ID)
		if err != nil {
			e.log.Warn("could not read a finished child task's steps; will look again", "task_id", ref.parentID, "child_task_id", child.ID, "err", err)
			return
		}
		if results, err = childResults(steps); err != nil {
			fail = &store.StepError{Message: fmt.Sprintf("child task %s results: %s", child.ID, err), Class: "InvalidResult"}
		}
	}
	_, err := e.withTask(ctx, ref.parentID, func(tr *taskRun) error {
		i, ok := tr.byID[ref.stepID]
		if !ok || !tr.childRunning(i) || tr.steps[i].Attempts != ref.attempt {
			return nil // settled already, or a later attempt runs
		}
		s := tr.steps[i]
		c := e.newChange(tr)
		switch {
		case fail != nil:
			e.settleAttempt(tr, i, fail.Message)
			e.failStep(c, i, fail, 0, "")
		case child.State == state.Error || child.State == state.Cancelled:
			class, what := childFailedClass, "failed"
			if child.State == state.Cancelled {
				class, what = childCancelledClass, "was cancelled"
			}
			msg := fmt.Sprintf("child task %s (%s) %s", child.ID, ref.ref, what)
			e.settleAttempt(tr, i, msg)
			e.failStep(c, i, &store.StepError{Message: msg, Class: class, Retryable: true}, 0, "")
		case len(results) > e.limits.MaxResultBytes:
			msg := fmt.Sprintf("child task %s results are %d bytes, over the limit of %d bytes (max_result_bytes)", child.ID, len(results), e.limits.MaxResultBytes)
			e.settleAttempt(tr, i, msg)
			e.failStep(c, i, &store.StepError{Message: msg, Class: "ResultTooLarge"}, 0, "")
		default:
			e.settleAttempt(tr, i, "")
			meta, _ := json.Marshal(map[string]string{"child_task_id": child.ID})
			c.moveStep(i, state.Complete, fmt.Sprintf("attempt %d: child task %s completed", s.Attempts, child.ID), func(sc *store.StepChange) {
				sc.Results = results
				sc.Metadata = meta
			})
			e.schedule(c, tr.childrenOf(i))
		}
		return e.commit(ctx, c)
	})
	var owned *store.OwnedError
	switch {
	case err == nil:
	case errors.As(err, &owned):
		// The parent moved to another coordinator: its owner looks at
		// the child when it loads the parent, and on its rechecks.
	default:
		e.log.Warn("could not settle a child task's step; will look again", "task_id", ref.parentID, "step", ref.stepName, "err", err)
	}
}

// childFinished is called once a task's move to a finished state is
// committed: a child tells its parent's owner to look at it. The caller
// holds tr.mu.
func (e *engine) childFinished(tr *taskRun) {
	parentID, stepID, childID := tr.task.ParentTaskID, tr.task.ParentStepID, tr.task.ID
	if parentID == "" || !childEnded(tr.task.State) {
		return
	}
	e.bg.goFn(func() {
		if err := e.notifyParent(e.ctx, parentID, stepID); err != nil {
			e.log.Warn("could not tell a parent task its child finished; its owner looks again within the recheck, or at a retry of the parent",
				"task_id", childID, "parent_task_id", parentID, "err", err, "recheck", e.childRecheck)
		}
	})
}

// notifyParent makes the parent's owner look at the child of the parent's
// step now: this coordinator if it holds the parent or nobody live owns it
// (then it takes it, and loading it looks at the child), or its owner,
// through a forwarded ReportStepResult for the step.
func (e *engine) notifyParent(ctx context.Context, parentID, stepID string) error {
	if tr := e.lookup(parentID); tr != nil {
		tr.mu.Lock()
		if i, ok := tr.byID[stepID]; ok && !tr.done && !tr.broken && tr.childRunning(i) {
			e.watchChild(tr, i, 0)
			tr.mu.Unlock()
			return nil
		}
		tr.mu.Unlock()
	}
	t, err := e.store.TaskGet(ctx, parentID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case t.State.Terminal() && t.State != state.Error:
		return nil // nothing waits on the child any more
	}
	var failedKey string
	_, err = e.withTask(ctx, parentID, func(tr *taskRun) error {
		if i, ok := tr.byID[stepID]; ok {
			if tr.childRunning(i) {
				e.watchChild(tr, i, 0)
			} else {
				failedKey = failedChildKey(tr, i)
			}
		}
		return nil
	})
	var owned *store.OwnedError
	if errors.As(err, &owned) && e.notifyElsewhere != nil {
		return e.notifyElsewhere(ctx, owned, parentID, stepID)
	}
	if err != nil || failedKey == "" {
		return err
	}
	_, err = e.settleFailedChild(ctx, parentID, stepID, failedKey)
	return err
}

// failedChildKey is the key of the child that step i failed with, if it
// runs a child task and is in error because its latest attempt's child
// failed or was cancelled; "" otherwise. The caller holds tr.mu.
func failedChildKey(tr *taskRun, i int) string {
	s := tr.steps[i]
	if childSpec(tr, i) == nil || s.State != state.Error || s.Error == nil ||
		s.Error.Class != childFailedClass && s.Error.Class != childCancelledClass {
		return ""
	}
	return childKey(tr.task.ID, s.ID, s.Generation, s.Attempts)
}

// settleFailedChild resolves a child step that failed with its child (of
// key) once that very child has completed after all (an operator retried it, or
// resolved its failed steps): the step stayed failed, and a retry of the
// parent would have made a new child to do the work again. The step
// becomes resolved_manually with the child's results (its own attempt did
// fail; the child's completion stands in for it) and the parent goes on as
// after any resolve. A step that has moved on (retried, with a new child)
// is left alone, and so are results the step could not take: its failure
// stands, and an operator can still resolve it by hand.
func (e *engine) settleFailedChild(ctx context.Context, parentID, stepID, key string) (settled bool, err error) {
	child, err := e.findChild(ctx, key)
	if err != nil || child == nil || (child.State != state.Complete && child.State != state.ResolvedManually) {
		return false, err
	}
	steps, err := e.store.StepList(ctx, child.ID)
	if err != nil {
		return false, fmt.Errorf("read the steps of child task %s: %w", child.ID, err)
	}
	results, err := childResults(steps)
	if err != nil || len(results) > e.limits.MaxResultBytes {
		e.log.Warn("a failed child step's child completed, but its results do not fit the step; left failed", "task_id", parentID, "child_task_id", child.ID, "bytes", len(results), "err", err)
		return false, nil
	}
	meta, _ := json.Marshal(map[string]string{"child_task_id": child.ID})
	_, err = e.withTask(ctx, parentID, func(tr *taskRun) error {
		i, ok := tr.byID[stepID]
		if !ok || failedChildKey(tr, i) != key || tr.task.State == state.Cancelled || tr.task.State == state.Complete {
			return nil // moved on meanwhile
		}
		s := tr.steps[i]
		reason := fmt.Sprintf("child task %s completed after attempt %d failed with it", child.ID, s.Attempts)
		if err := e.resolveIn(ctx, tr, i, reason, "resumed after the child task of "+s.Name+" completed", func(sc *store.StepChange) {
			sc.Results, sc.Metadata = results, meta
		}); err != nil {
			return err
		}
		settled = true
		return nil
	})
	return settled, err
}

// settleCompletedChildren settles, before a retry of the parent, each of
// its steps that failed with a child that has completed since: a notice of
// that completion lost to a crash would otherwise leave the step to run a
// new child for work already done. It reports whether it settled any.
// Failures are left to the retry, which then runs those steps again as
// ever.
func (e *engine) settleCompletedChildren(ctx context.Context, parentID string) bool {
	steps, err := e.store.StepList(ctx, parentID)
	if err != nil {
		return false
	}
	settled := false
	for _, s := range steps {
		if s.State != state.Error || s.Error == nil || s.Error.Class != childFailedClass {
			continue
		}
		ok, err := e.settleFailedChild(ctx, parentID, s.ID, childKey(parentID, s.ID, s.Generation, s.Attempts))
		var owned *store.OwnedError
		if err != nil && !errors.As(err, &owned) { // an owner elsewhere settles it as the retry is forwarded there
			e.log.Info("could not look at a failed child step's child before a retry; retrying the step", "task_id", parentID, "step", s.Name, "err", err)
		}
		settled = settled || ok
	}
	return settled
}

// notifyElsewhere asks the coordinator that owns a parent task to look at
// the child of one of its steps: a ReportStepResult for the step, which
// for a step that runs a child only triggers that look (applyOne).
func (c *Coordinator) notifyElsewhere(ctx context.Context, owned *store.OwnedError, parentID, stepID string) error {
	return c.forwardResult(ctx, owned, &executorv1.StepResult{
		TaskId: parentID, StepId: stepID, Attempt: 1, ExecutorId: "coordinator:" + c.cfg.ID,
		Outcome: &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{}},
	})
}

// forwardResult reports a step result to the coordinator that owns its
// task, with this coordinator's own peer credentials (a mesh certificate;
// with bearer tokens and no mesh, the owner refuses it).
func (c *Coordinator) forwardResult(ctx context.Context, owned *store.OwnedError, r *executorv1.StepResult) error {
	_, err := forward(ctx, c.peers, owned, func(ctx context.Context, cl coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.ReportStepResultResponse, error) {
		return cl.ReportStepResult(ctx, &coordinatorv1.ReportStepResultRequest{Result: r})
	})
	return err
}

// watchParent arms a running child task's look at its parent after d,
// replacing any look armed before; it does nothing for other tasks. The
// caller holds tr.mu.
func (e *engine) watchParent(tr *taskRun, d time.Duration) {
	if tr.task.ParentTaskID == "" || tr.done {
		return
	}
	if tr.parentCheck != nil {
		tr.parentCheck.Stop()
	}
	tr.parentCheck = e.bg.afterFunc(d, func() { e.checkParent(tr) })
}

// checkParent cancels a running child task whose parent's step no longer
// waits for it: the parent's cancel or failure, or the step's end, was
// committed but the child's cancel never landed (the coordinator stopped
// in between, or every try failed). cancelChildren is the fast path; this
// look, at load and every childRecheck while the child is in memory, is
// what makes it certain. The next look is armed first, so a failed read or
// cancel is tried again, and a child being reloaded (its memory says what
// a failed write left) is looked at once it is whole.
func (e *engine) checkParent(tr *taskRun) {
	tr.mu.Lock()
	if tr.done {
		tr.mu.Unlock()
		return
	}
	e.watchParent(tr, e.childRecheck)
	if tr.broken || tr.task.State != state.Pending && tr.task.State != state.InProgress {
		tr.mu.Unlock()
		return
	}
	childID, parentID, stepID, key := tr.task.ID, tr.task.ParentTaskID, tr.task.ParentStepID, tr.task.IdentityKey
	tr.mu.Unlock()
	steps, err := e.store.StepList(e.ctx, parentID)
	if err != nil {
		e.log.Warn("could not read a child task's parent; will look again", "task_id", childID, "parent_task_id", parentID, "err", err)
		return
	}
	reason := parentGone(steps, parentID, stepID, key)
	if reason == "" {
		return
	}
	e.log.Info("cancelling a child task its parent no longer waits for", "task_id", childID, "parent_task_id", parentID, "reason", reason)
	var owned *store.OwnedError
	if _, err := e.cancelTask(e.ctx, childID, reason); err != nil && !errors.As(err, &owned) && status.Code(toStatus(err)) != codes.FailedPrecondition {
		e.log.Warn("could not cancel a child task its parent no longer waits for; will look again", "task_id", childID, "err", err)
	}
}

// parentGone says why the parent's step (of stepID, among the parent's
// steps) no longer waits for the child of key, or "" if it still does:
// its latest attempt made that child, and it is in progress, or failed
// because that child failed (a child an operator retries to completion
// then settles the step; settleFailedChild).
func parentGone(steps []*store.Step, parentID, stepID, key string) string {
	i := slices.IndexFunc(steps, func(s *store.Step) bool { return s.ID == stepID })
	if i < 0 {
		return fmt.Sprintf("parent task %s no longer exists", parentID)
	}
	s := steps[i]
	mine := childKey(parentID, s.ID, s.Generation, s.Attempts) == key
	switch {
	case mine && s.State == state.InProgress,
		mine && s.State == state.Error && s.Error != nil && s.Error.Class == childFailedClass:
		return ""
	case s.State == state.InProgress:
		return fmt.Sprintf("parent task %s step %s no longer waits for it (attempt %d runs another child)", parentID, s.Name, s.Attempts)
	}
	return fmt.Sprintf("parent task %s step %s no longer waits for it (step is %s)", parentID, s.Name, s.State)
}

// childAttempt names the child of one step attempt, for cancelling it.
type childAttempt struct {
	stepID  string
	attempt int
	key     string
}

// runningChildren lists the child step attempts in progress. The caller
// holds tr.mu.
func runningChildren(tr *taskRun) []childAttempt {
	var out []childAttempt
	for i, s := range tr.steps {
		if tr.childRunning(i) {
			out = append(out, childAttempt{stepID: s.ID, attempt: s.Attempts, key: childKey(tr.task.ID, s.ID, s.Generation, s.Attempts)})
		}
	}
	return out
}

// endChildren fails the child steps in progress of a task that failed:
// nothing will use their results. Their children are cancelled once the
// change is committed (cancelChildren). The caller holds tr.mu.
func (e *engine) endChildren(c *change, reason string) {
	tr := c.tr
	running := runningChildren(tr)
	if len(running) == 0 {
		return
	}
	for _, r := range running {
		i := tr.byID[r.stepID]
		e.settleAttempt(tr, i, reason)
		serr := &store.StepError{Message: reason, Class: "TaskFailed", Retryable: true}
		c.moveStep(i, state.Error, fmt.Sprintf("attempt %d stopped waiting for its child task: %s", r.attempt, reason), func(sc *store.StepChange) {
			sc.Error = serr
		})
	}
	e.cancelChildren(tr.task.ID, running, "parent task "+tr.task.ID+" failed")
}

// cancelChildren cancels the children of the given step attempts, wherever
// they run, once the parent's change that ended those attempts is
// committed: it reads the parent's steps back and cancels only the
// children of attempts the store no longer has in progress. Each cancel is
// tried a few times; a child whose cancel never lands here is cancelled by
// its own look at its parent (checkParent). Called
// with the parent's lock held or not; it acts on its own goroutine.
func (e *engine) cancelChildren(parentID string, running []childAttempt, reason string) {
	if len(running) == 0 {
		return
	}
	e.bg.goFn(func() {
		ctx := e.ctx
		// Waits for the change being made under the parent's lock to be
		// committed (or not) before reading what the store says.
		if tr := e.lookup(parentID); tr != nil {
			tr.mu.Lock()
			broken := tr.broken
			tr.mu.Unlock()
			if broken {
				e.log.Info("parent task is being reloaded; cancelling the children of the attempts the store ended", "task_id", parentID)
			}
		}
		steps, err := e.store.StepList(ctx, parentID)
		if err != nil {
			e.log.Warn("could not read a parent task's steps to cancel its children", "task_id", parentID, "err", err)
			return
		}
		for _, r := range running {
			i := slices.IndexFunc(steps, func(s *store.Step) bool { return s.ID == r.stepID })
			if i >= 0 && steps[i].State == state.InProgress && steps[i].Attempts == r.attempt {
				continue // not committed: the attempt still runs
			}
			e.cancelChild(ctx, parentID, r.key, reason)
		}
	})
}

// cancelChild cancels the child with the given key, retrying a few times.
func (e *engine) cancelChild(ctx context.Context, parentID, key, reason string) {
	wait := 100 * time.Millisecond
	for try := 1; ; try++ {
		child, err := e.findChild(ctx, key)
		if err == nil && child == nil {
			return // never created
		}
		if err == nil && (child.State == state.Pending || child.State == state.InProgress) && e.cancelAnywhere != nil {
			err = e.cancelAnywhere(ctx, child.ID, reason)
		}
		if err == nil {
			return
		}
		if try == 3 || ctx.Err() != nil {
			e.log.Warn("could not cancel a child task; it cancels itself on its next look at its parent", "task_id", parentID, "child_key", key, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 4
	}
}

// childTaskIDs finds the child of the latest attempt of each child step of
// a task read for the API, by step id. One read per child step that has
// started; none for templates without child steps.
func (e *engine) childTaskIDs(ctx context.Context, t *store.Task, steps []*store.Step) map[string]string {
	ct, err := e.templates.get(ctx, t.Namespace, t.Name, t.Version)
	if err != nil || !slices.ContainsFunc(ct.tmpl.Steps, func(s template.Step) bool { return s.IsChild() }) {
		return nil
	}
	out := map[string]string{}
	for _, s := range steps {
		i, ok := ct.index[s.Name]
		if !ok || !ct.tmpl.Steps[i].IsChild() || s.Attempts == 0 {
			continue
		}
		child, err := e.findChild(ctx, childKey(t.ID, s.ID, s.Generation, s.Attempts))
		if err == nil && child != nil {
			out[s.ID] = child.ID
		}
	}
	return out
}

// addChildLinks fills in a task read for the API: its steps' children and,
// for a child, the name of its parent's step.
func (e *engine) addChildLinks(ctx context.Context, p *coordinatorv1.Task, v *taskView) {
	if ids := e.childTaskIDs(ctx, v.task, v.steps); len(ids) > 0 {
		for _, ps := range p.GetSteps() {
			ps.ChildTaskId = ids[ps.GetId()]
		}
	}
	if v.task.ParentTaskID == "" {
		return
	}
	steps, err := e.store.StepList(ctx, v.task.ParentTaskID)
	if err != nil {
		return // the ids are there; the name is a convenience
	}
	for _, s := range steps {
		if s.ID == v.task.ParentStepID {
			p.ParentStep = s.Name
		}
	}
}

// checkChildren refuses a normalized template with a step whose child
// template is not registered (at that version, or at any for a reference
// without one), or that runs its own template as a child, which would
// nest without end. The error is a *template.ValidationError. A child
// template registered later does not make an older parent valid: register
// children first.
func (b *templateBook) checkChildren(ctx context.Context, t *template.Template) error {
	for _, s := range t.Steps {
		if !s.IsChild() {
			continue
		}
		ref, err := template.ParseTaskRef(s.Task)
		if err != nil {
			return err // Validate refused it already
		}
		if ref.Namespace == t.Namespace && ref.Name == t.Name {
			return &template.ValidationError{Step: s.Name, Field: "task",
				Message: fmt.Sprintf("%q is this template; a task cannot run its own template as a child task", s.Task)}
		}
		if _, err := b.get(ctx, ref.Namespace, ref.Name, ref.Version); err != nil {
			var ce *codedError
			if errors.As(err, &ce) && ce.code == codes.NotFound {
				return &template.ValidationError{Step: s.Name, Field: "task",
					Message: fmt.Sprintf("template %s is not registered; register the child template first", ref)}
			}
			return fmt.Errorf("step %q: task: load template %s: %w", s.Name, ref, err)
		}
	}
	return nil
}
