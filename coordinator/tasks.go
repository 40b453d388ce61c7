package coordinator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// createParams is a validated CreateTask request.
type createParams struct {
	namespace, name, version string
	context                  json.RawMessage
	idempotencyKey           string
	bypass                   []string
	// runAt, when after the creation, delays the task's start.
	runAt time.Time
	// priority overrides the template's; 0 takes it.
	priority int
	// debounce, when set, makes a debounced create (see debounce.go).
	debounce *debounceParams
	// parentTaskID and parentStepID make the task a child of that task's
	// step (children.go).
	parentTaskID, parentStepID string
	// basic says the caller answers with the task's own fields only
	// (TASK_VIEW_BASIC), so why its steps wait need not be worked out.
	basic bool
}

// createTask validates the request, inserts the task and dispatches its
// root steps in the same transaction. It returns what it stored (task,
// steps, transitions with their sequence numbers), so the caller need not
// read it back. A repeat of an existing identity returns only the stored
// task, with created=false.
func (e *engine) createTask(ctx context.Context, p *createParams) (*taskView, bool, error) {
	if p.debounce != nil {
		return e.createDebounced(ctx, p)
	}
	return e.createOnce(ctx, p)
}

// stamp returns a new task's creation time and ID. The time is read first:
// the ID (a UUIDv7, whose millisecond comes from the clock and never goes
// back) is then never older than it, which lets a created_after bound be
// read as a range of IDs (idRange).
func (e *engine) stamp() (time.Time, string) {
	now := e.now()
	return now, uuid.Must(uuid.NewV7()).String()
}

// createOnce is one attempt of createTask; a debounced create may take
// more (createDebounced).
func (e *engine) createOnce(ctx context.Context, p *createParams) (*taskView, bool, error) {
	if e.draining.Load() {
		return nil, false, &codedError{codes.Unavailable, errors.New("coordinator is shutting down; retry against another coordinator or after restart")}
	}
	if p.namespace == "" || p.name == "" {
		return nil, false, invalidf("namespace and name are required")
	}
	if p.priority != 0 && (p.priority < template.MinPriority || p.priority > template.MaxPriority) {
		return nil, false, invalidf("priority: %d is out of range (want %d to %d, higher runs first; 0 takes the template's)", p.priority, template.MinPriority, template.MaxPriority)
	}
	if len(p.context) > e.limits.MaxContextBytes {
		return nil, false, exhaustedf("context is %d bytes, over the limit of %d bytes (max_context_bytes)", len(p.context), e.limits.MaxContextBytes)
	}
	ct, err := e.templates.get(ctx, p.namespace, p.name, p.version)
	if err != nil {
		return nil, false, err
	}
	if err := ct.schema.Validate(p.context); err != nil {
		return nil, false, err
	}
	p.bypass = slices.Compact(slices.Sorted(slices.Values(p.bypass)))
	for _, b := range p.bypass {
		i, ok := ct.index[b]
		if !ok {
			return nil, false, invalidf("bypass_steps: unknown step %q", b)
		}
		if !ct.tmpl.Steps[i].Skippable {
			return nil, false, invalidf("bypass_steps: step %q is not skippable", b)
		}
	}
	flow, err := flowOf(ct, p.context)
	if err != nil {
		return nil, false, err
	}
	now, id := e.stamp()
	key, err := identityKey(ct.tmpl, p, id)
	if err != nil {
		return nil, false, err
	}
	task := &store.Task{
		ID: id, Namespace: ct.tmpl.Namespace, Name: ct.tmpl.Name,
		Version: ct.tmpl.Version, State: state.Pending, Context: p.context, IdentityKey: key,
		BypassSteps: p.bypass, CreatedAt: now, UpdatedAt: now,
		ParentTaskID: p.parentTaskID, ParentStepID: p.parentStepID,
	}
	if p.runAt.After(now) {
		task.RunAt = p.runAt
	}
	if p.debounce != nil {
		task.DebounceKey, task.RunAt = p.debounce.key, now.Add(p.debounce.delay)
	}
	task.Priority = cmp.Or(p.priority, ct.tmpl.Priority, template.DefaultPriority)
	if l := e.lease.Load(); l != nil {
		task.OwnerToken = l.Token
	}
	steps := make([]*store.Step, len(ct.tmpl.Steps))
	rows := make([]store.Step, len(steps)) // one allocation, not one per step
	for i, st := range ct.tmpl.Steps {
		steps[i] = &rows[i]
		rows[i] = store.Step{
			ID: uuid.Must(uuid.NewV7()).String(), TaskID: task.ID, Name: st.Name, Position: i,
			Handler: st.Handler, DependsOn: st.DependsOn, State: state.Pending,
			MaxAttempts: st.RetryLimit, Retryable: st.IsRetryable(), Skippable: st.Skippable, UpdatedAt: now,
		}
	}

	tr := newTaskRun(task, ct, steps)
	tr.flow = flow
	tr.mu.Lock()
	defer tr.mu.Unlock()
	c := e.newChange(tr)
	c.params.At = now
	for _, b := range p.bypass {
		c.moveStep(ct.index[b], state.ResolvedManually, "bypassed at creation (skippable step listed in bypass_steps)", nil)
	}
	// The initial dispatch rides in the creating transaction: the task is
	// stored already in_progress with its roots sent, one commit in all.
	// Under flow control that dispatch is admitted in the same
	// transaction; refused, the task is stored as it is now instead.
	var undispatched *store.TaskCreateParams
	if flow != nil {
		pending := *task
		undispatched = &store.TaskCreateParams{Task: &pending, Steps: make([]*store.Step, len(tr.steps)), Transitions: transitionsOf(&c.params)}
		for i, s := range tr.steps {
			st := s.Step
			undispatched.Steps[i] = &st
		}
	}
	if tr.satisfied < len(tr.steps) {
		e.schedule(c, nil) // with every step bypassed, the task completes below
	}
	stored := *task
	created := &store.TaskCreateParams{Task: &stored, Steps: make([]*store.Step, len(tr.steps)), Transitions: transitionsOf(&c.params)}
	if tr.satisfied == len(tr.steps) && c.params.Task == nil {
		// Every step was bypassed: the task is complete at once, which
		// takes two task transitions in the one transaction.
		for _, to := range []state.State{state.InProgress, state.Complete} {
			created.Transitions = append(created.Transitions, &store.Transition{
				TaskID: task.ID, From: tr.task.State, To: to, At: now, Reason: "every step was bypassed",
			})
			tr.task.State = to
		}
		tr.task.CompletedAt, tr.task.UpdatedAt = now, now
	}
	stored.State, stored.CompletedAt, stored.UpdatedAt = tr.task.State, tr.task.CompletedAt, tr.task.UpdatedAt
	for i, s := range tr.steps {
		st := s.Step
		created.Steps[i] = &st
	}
	if c.refused != nil {
		c.abandon()
		return nil, false, fmt.Errorf("create task: %w", c.refused)
	}
	if undispatched != nil {
		if c.params.Admit != nil {
			created.Admit = append(created.Admit, c.params.Admit)
		}
		for _, sc := range c.params.Steps {
			if sc.Admit != nil {
				created.Admit = append(created.Admit, sc.Admit)
			}
		}
		if len(created.Admit) > 0 {
			created.Undispatched, created.Aging = undispatched, e.pool.aging
		}
	}
	// The run is registered before the write: once the task is visible in
	// the store, another request may act on it here (a repeated create, a
	// debounced one folding into it) and must find this run, waiting on its
	// lock, rather than load a second run of the same task.
	e.mu.Lock()
	e.tasks[task.ID] = tr
	e.mu.Unlock()
	got, isNew, err := e.store.TaskCreate(ctx, created)
	e.writes.observe(e.now(), err)
	switch {
	case err != nil:
		c.abandon()
		// A lease lost or a conflict is a definite refusal: nothing written.
		if errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrConflict) {
			e.unregister(tr)
		} else {
			e.createUnknown(tr)
		}
		return nil, false, fmt.Errorf("create task: %w", err)
	case !isNew:
		c.abandon()
		e.unregister(tr)
		if task.DebounceKey != "" && got.DebounceKey == task.DebounceKey {
			return e.debounceInto(ctx, got, p)
		}
		return e.existing(ctx, got)
	}
	refused := len(created.Refused) > 0
	if refused {
		e.undoWaitStarts(c, undispatched)
		// Nothing was dispatched: memory goes back to what was stored.
		for _, i := range c.dispatch {
			s := tr.steps[i]
			e.pool.release(s.executor)
			s.Step, s.executor = *undispatched.Steps[i], ""
			tr.sync(i)
			tr.setInFlight(i, false)
		}
		tr.task.State, tr.task.UpdatedAt = state.Pending, now
		c.dispatch, c.prevs, c.params.Task, c.params.Refused = nil, nil, nil, created.Refused
		e.refused(c)
		created = undispatched
	}
	for _, t := range created.Transitions {
		tr.lastSeq = max(tr.lastSeq, t.Seq)
	}
	e.trace.startTask(ctx, tr, false)
	e.metrics.observeCreate(tr, created.Transitions)
	e.hub.publish(task.ID, watchEvent{transitions: created.Transitions, before: state.Pending})
	e.afterCommit(c)
	e.watchParent(tr, e.childRecheck)
	if refused && !tr.done {
		e.awaitAdmission(c)
		// Steps admitted before the refusal hold their places: they go
		// now (and the refused wait).
		c := e.newChange(tr)
		e.schedule(c, nil)
		if err := e.commit(e.ctx, c); err != nil {
			// The task is stored; its repair carries it on.
			e.log.Error("first dispatch of a created task failed", "task_id", task.ID, "err", err)
		}
	}
	v := &taskView{task: got, steps: created.Steps, transitions: created.Transitions}
	if !p.basic {
		v.waiting = e.waitingOf(tr, now)
	}
	return v, true, nil
}

// identityKey is what identifies a new task (store.Task.IdentityKey)
// under its template's identity strategy: the caller's idempotency key
// whenever one is given; without one, a hash of template and context
// (strict), the task's own id (unique: always a new task), or a refusal
// (caller_key). A debounced task has no identity: its debounce key, which
// the caller gives, finds it, and its context changes.
func identityKey(t *template.Template, p *createParams, id string) (string, error) {
	if p.idempotencyKey != "" {
		return p.idempotencyKey, nil
	}
	switch {
	case p.debounce != nil:
		return "", nil // its debounce key, the caller's, identifies it
	case t.Identity == template.IdentityCallerKey:
		return "", invalidf("idempotency_key: required by template %s/%s@%s (identity: caller_key)", t.Namespace, t.Name, t.Version)
	case t.Identity == template.IdentityUnique:
		return id, nil
	}
	return template.Identity(t.Namespace, t.Name, t.Version, p.context), nil
}

// createUnknown handles a creation whose write failed without saying
// whether it committed (the connection may have dropped after COMMIT): the
// task may exist, owned by this coordinator, with its roots recorded as
// dispatched but never sent, and no claim would ever pick it up, since its
// owner is alive. So its run, registered before the write, is treated as
// broken: repair reads the store until it answers, drops the run if the
// task is not there, and carries it on if it is. The caller holds tr.mu.
func (e *engine) createUnknown(tr *taskRun) {
	e.breakTask(tr)
}

// unregister drops the run of a task whose creation stored nothing. A
// request that found the run meanwhile sees it done and looks again. The
// caller holds tr.mu.
func (e *engine) unregister(tr *taskRun) {
	tr.done = true
	e.mu.Lock()
	if e.tasks[tr.task.ID] == tr {
		delete(e.tasks, tr.task.ID)
	}
	e.mu.Unlock()
}

// existing answers a create that found its task already stored (the same
// idempotency key or identity). If this coordinator owns that task but
// does not hold it in memory (an earlier create's outcome was unknown), it
// carries the task on now.
func (e *engine) existing(ctx context.Context, t *store.Task) (*taskView, bool, error) {
	if l := e.lease.Load(); l != nil && t.OwnerToken == l.Token && !t.State.Terminal() && e.lookup(t.ID) == nil {
		if _, err := e.load(ctx, t); err != nil {
			e.log.Warn("could not carry on a task found by a repeated create", "task_id", t.ID, "err", err)
		}
	}
	v, err := e.readTask(ctx, t.ID)
	return v, false, err
}

// transitionsOf turns a change into the initial transitions of a new task.
func transitionsOf(p *store.TaskAdvanceParams) []*store.Transition {
	var out []*store.Transition
	for _, sc := range p.Steps {
		out = append(out, &store.Transition{
			TaskID: p.TaskID, StepID: sc.StepID, StepName: sc.StepName, From: sc.From, To: sc.To,
			At: p.At, Reason: sc.Reason, Attempt: sc.Attempts, Metadata: sc.Metadata,
		})
	}
	if p.Task != nil {
		out = append(out, &store.Transition{TaskID: p.TaskID, From: p.Task.From, To: p.Task.To, At: p.At, Reason: p.Task.Reason, Metadata: p.Task.Metadata})
	}
	return out
}

// withTask runs fn under the lock of the task's run in memory and returns
// the task as fn left it. A task not in memory is first taken into this
// coordinator's ownership (see bring); a task owned by another live
// coordinator is not touched, and the error (a *store.OwnedError) names the
// owner, so the request can be forwarded there. A task that fn leaves with
// nothing to do (finished, no step running) leaves memory again, whether fn
// changed it or refused to.
func (e *engine) withTask(ctx context.Context, id string, fn func(tr *taskRun) error) (*snapshot, error) {
	if id == "" {
		return nil, invalidf("id is required")
	}
	if e.ctx.Err() != nil {
		return nil, ErrStopped
	}
	// A run found retired under its lock was dropped between the lookup
	// and the lock (it finished, or another action retired it): look again.
	for range 3 {
		tr := e.lookup(id)
		if tr == nil {
			var err error
			if tr, err = e.bring(ctx, id); err != nil {
				return nil, err
			}
		}
		tr.mu.Lock()
		if tr.done {
			tr.mu.Unlock()
			continue
		}
		if tr.broken {
			tr.mu.Unlock()
			return nil, errRepairing
		}
		err := fn(tr)
		snap := e.snapshot(tr)
		if !tr.done && !tr.broken && !tr.active() {
			e.retire(tr)
		}
		tr.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return snap, nil
	}
	return nil, &codedError{codes.Aborted, fmt.Errorf("task %s changed while the request was applied; retry", id)}
}

// bring makes this coordinator the owner of a task that is not in its
// memory and loads it: a task it owns already (created or claimed by it,
// and not loaded: finished, or its creation's outcome was unknown), one
// whose owner's lease lapsed (a restart, a dead coordinator), or a
// finished one. The take is fenced by this coordinator's lease like every
// write. A task another live coordinator owns is left to it.
func (e *engine) bring(ctx context.Context, id string) (*taskRun, error) {
	if e.ctx.Err() != nil {
		return nil, ErrStopped // after Stop, nothing new is loaded or written
	}
	l := e.lease.Load()
	if l == nil {
		return nil, fmt.Errorf("task %s: no lease: %w", id, store.ErrLeaseLost)
	}
	t, err := e.store.TaskTake(ctx, &store.TaskTakeParams{Lease: l, TaskID: id, Now: e.now()})
	if errors.Is(err, store.ErrConflict) {
		// The owner's lease changed while the take ran; asking again gets
		// a definite answer.
		t, err = e.store.TaskTake(ctx, &store.TaskTakeParams{Lease: l, TaskID: id, Now: e.now()})
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFoundf("task %s not found", id)
		}
		return nil, err
	}
	return e.load(ctx, t)
}

// load brings a stored task into memory, registers it as active and
// carries it on, as after a restart: its steps in flight wait for their
// results within the grace period (or are adopted when an executor reports
// them running), errored steps get their backoff timers back, ready steps
// are dispatched.
func (e *engine) load(ctx context.Context, t *store.Task) (*taskRun, error) {
	ct, err := e.templates.get(ctx, t.Namespace, t.Name, t.Version)
	if err != nil {
		return nil, err
	}
	steps, err := e.store.StepList(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("load steps of task %s: %w", t.ID, err)
	}
	tr, fresh := e.register(t, ct, steps)
	if fresh {
		e.start(ctx, tr)
	}
	return tr, nil
}

// register makes a new run of a stored task the active one, unless one is
// active already; it reports whether it did.
func (e *engine) register(t *store.Task, ct *compiledTemplate, steps []*store.Step) (*taskRun, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if existing := e.tasks[t.ID]; existing != nil {
		return existing, false
	}
	tr := newTaskRun(t, ct, steps)
	tr.flow = loadedFlow(e.log, ct, t)
	e.tasks[t.ID] = tr
	return tr, true
}

// start carries on a task just registered from the store.
func (e *engine) start(ctx context.Context, tr *taskRun) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.done {
		return
	}
	e.watchInFlight(tr)
	// Loaded after a crash or a take-over: a cancel of its parent may
	// have been committed and this child's own cancel lost with the crash.
	e.watchParent(tr, 0)
	if tr.task.State.Terminal() {
		// Loaded for an operator action, or for the results of steps
		// still running: nothing to dispatch. withTask retires it again
		// if the action leaves it finished.
		return
	}
	e.trace.startTask(ctx, tr, true)
	c := e.newChange(tr)
	e.schedule(c, nil)
	// The engine's own write, not the caller's: a caller that gives up
	// must not break the task it brought in.
	if err := e.commit(e.ctx, c); err != nil {
		e.log.Error("continue task failed", "task_id", tr.task.ID, "err", err)
	}
}

// cancelTask cancels the task, its pending steps and its running steps,
// and tells executors to abandon the running ones.
func (e *engine) cancelTask(ctx context.Context, id, reason string) (*snapshot, error) {
	if reason == "" {
		reason = "cancelled by request"
	}
	return e.withTask(ctx, id, func(tr *taskRun) error {
		if state.TaskTransition(tr.task.State, state.Cancelled) == state.Refused {
			return preconditionf("task %s is %s and cannot be cancelled", id, tr.task.State)
		}
		if tr.task.State == state.Cancelled {
			return nil
		}
		c := e.newChange(tr)
		children := runningChildren(tr) // cancelled with the task (children.go)
		for i, s := range tr.steps {
			switch s.State {
			case state.Pending:
				c.moveStep(i, state.Cancelled, reason, nil)
			case state.InProgress:
				if s.executor != "" {
					c.cancel = append(c.cancel, cancelRequest(tr.task.ID, s.ID, int32(s.Attempts), reason))
					c.cancelOn = append(c.cancelOn, s.executor)
				}
				e.settleAttempt(tr, i, "cancelled: "+reason)
				c.moveStep(i, state.Cancelled, reason, nil)
			}
		}
		c.moveTask(state.Cancelled, reason)
		if err := e.commit(ctx, c); err != nil {
			return err
		}
		e.cancelChildren(id, children, fmt.Sprintf("parent task %s cancelled: %s", id, reason))
		return nil
	})
}

// retryTask moves an errored task back to pending and gives each failed
// step a fresh set of attempts, then dispatches what is ready.
func (e *engine) retryTask(ctx context.Context, id, reason string) (*snapshot, error) {
	if reason == "" {
		reason = "retried by request"
	}
	settled := e.settleCompletedChildren(ctx, id)
	return e.withTask(ctx, id, func(tr *taskRun) error {
		if tr.task.State != state.Error {
			if settled && !tr.task.State.Terminal() {
				return nil // the children's results set it going again
			}
			return preconditionf("task %s is %s; only a task in error can be retried", id, tr.task.State)
		}
		c := e.newChange(tr)
		for i, s := range tr.steps {
			if s.State == state.Error {
				limit := tr.tmpl.tmpl.Steps[tr.tix(i)].RetryLimit
				c.moveStep(i, state.Pending, reason, func(sc *store.StepChange) {
					sc.MaxAttempts = s.Attempts + limit
					sc.NextRetryAt = c.params.At
				})
			}
		}
		c.moveTask(state.Pending, reason)
		if err := e.commit(ctx, c); err != nil {
			return err
		}
		next := e.newChange(tr)
		e.schedule(next, nil)
		return e.commit(ctx, next)
	})
}

// resolveStep marks a pending or errored step resolved_manually, which
// satisfies its children (for an instance, its for_each step, which resumes
// if the instance's failure had failed it: reopenForEach), and resumes an
// errored task when nothing else holds it back.
func (e *engine) resolveStep(ctx context.Context, taskID, stepName, reason string, results json.RawMessage) (*snapshot, error) {
	if stepName == "" {
		return nil, invalidf("step_name is required")
	}
	if reason == "" {
		reason = "resolved manually"
	}
	return e.withTask(ctx, taskID, func(tr *taskRun) error {
		i, ok := tr.stepIndex(stepName)
		if !ok {
			return notFoundf("task %s has no step %q", taskID, stepName)
		}
		s := tr.steps[i]
		if s.State == state.ResolvedManually {
			return nil
		}
		if s.State != state.Pending && s.State != state.Error {
			return preconditionf("step %q is %s; only a pending or errored step can be resolved manually", stepName, s.State)
		}
		if tr.task.State == state.Cancelled || tr.task.State == state.Complete {
			return preconditionf("task %s is %s", taskID, tr.task.State)
		}
		if results != nil && len(results) > e.limits.MaxResultBytes {
			return exhaustedf("results are %d bytes, over the limit of %d bytes (max_result_bytes)", len(results), e.limits.MaxResultBytes)
		}
		// Results that name "next" choose a decision step's branches, as
		// its handler's would, and are checked the same way.
		if tr.isDecision(i) && plan.NamesNext(results) {
			if err := tr.checkDecision(i, results); err != nil {
				return invalidf("results: %s", decisionMessage(err))
			}
		}
		return e.resolveIn(ctx, tr, i, reason, "resumed after "+stepName+" was resolved manually", func(sc *store.StepChange) { sc.Results = results })
	})
}

// resolveIn moves step i, pending or errored, to resolved_manually (edit
// sets its results and metadata) and lets the task go on: the steps below
// it, a for_each step its failure had failed, a decision's branches, and
// an errored task nothing else holds back (moved to pending with resumed
// as the reason). The caller holds tr.mu and has checked the step may be
// resolved.
func (e *engine) resolveIn(ctx context.Context, tr *taskRun, i int, reason, resumed string, edit func(*store.StepChange)) error {
	c := e.newChange(tr)
	c.moveStep(i, state.ResolvedManually, reason, edit)
	candidates := tr.childrenOf(i)
	if ref, ok := tr.instanceOf(i); ok && e.reopenForEach(c, ref.of, tr.steps[i].Name) {
		candidates = append(candidates, ref.of)
	}
	if tr.isDecision(i) {
		candidates = e.skipUntaken(c, candidates)
	}
	if tr.task.State == state.Error {
		if tr.exhausted == 0 {
			c.moveTask(state.Pending, resumed)
		}
		if err := e.commit(ctx, c); err != nil {
			return err
		}
		if tr.task.State != state.Pending {
			return nil
		}
		c = e.newChange(tr)
		e.schedule(c, nil)
		return e.commit(ctx, c)
	}
	e.schedule(c, candidates)
	return e.commit(ctx, c)
}
