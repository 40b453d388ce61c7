package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tasker-go/tasker/admission"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// engine runs the state machines of the active tasks. Every active task
// lives in memory as a taskRun; each event for a task takes that task's
// lock, decides the transitions, commits them, and only then acts on them
// (dispatch, cancel, finish).
type engine struct {
	ctx       context.Context // lives until stop; used for writes no caller waits on
	store     store.Store
	log       *slog.Logger
	limits    Limits
	templates *templateBook
	pool      *pool
	hub       *hub
	// events reads the event log for the subscribers of SubscribeEvents.
	events  *eventLog
	metrics *metrics
	trace   tracing
	grace   time.Duration
	now     func() time.Time
	// id names this coordinator's lease; leaseTTL is its life; address is
	// stored with it for peers.
	id       string
	address  string
	leaseTTL time.Duration
	// lease is the current lease; every write is fenced with it.
	lease atomic.Pointer[store.Lease]

	// bg owns every goroutine the engine starts; stop waits for them.
	bg routines
	// repairWait is the first wait before reloading a broken task.
	repairWait time.Duration
	// childRecheck is how often the parent of a child step and the child
	// look at each other (children.go).
	childRecheck time.Duration
	// held are the results received and not yet settled (see heldResults).
	held heldResults
	// writes records whether the store takes the work written to it, for
	// Ready.
	writes writeHealth
	// ready is the outcome of keepHealth's last look at Ready.
	ready atomic.Bool

	mu    sync.Mutex // protects tasks
	tasks map[string]*taskRun
	// draining is set at shutdown: nothing new is dispatched or created.
	draining atomic.Bool
	// admission holds the tasks waiting for concurrency keys to free.
	admission *admissionWaits
	// cancelAnywhere cancels a task wherever it runs (forwarding to its
	// owner); a concurrency key's strategy uses it.
	cancelAnywhere func(ctx context.Context, id, reason string) error
	// notifyElsewhere tells the coordinator owning a parent task that
	// the child of one of its steps finished (children.go).
	notifyElsewhere func(ctx context.Context, owned *store.OwnedError, parentID, stepID string) error
	// forwardResult hands a step result to the coordinator that owns its
	// task (routeResult).
	forwardResult func(ctx context.Context, owned *store.OwnedError, r *executorv1.StepResult) error
	// leaseCheck asks keepLease to renew now rather than at its next tick:
	// a write was refused for the lease, so it has most likely lapsed, and
	// the sooner that is noticed the sooner this coordinator starts over.
	leaseCheck chan struct{}
}

// taskRun is an active task in memory.
type taskRun struct {
	// qmu protects queue: results waiting for mu, applied in one batch by
	// the next holder of mu.
	qmu   sync.Mutex
	queue []*pendingResult

	mu    sync.Mutex // protects every field below; held across the store write so one task's changes are serialized
	task  store.Task
	tmpl  *compiledTemplate
	steps []*stepRun
	view  []plan.Step // readiness view of steps, kept in step with them
	byID  map[string]int
	// satisfied and exhausted count steps, so finalization is O(1);
	// satisfied counts the settled ones (complete, resolved manually or
	// skipped), which is what completing the task needs.
	satisfied, exhausted int
	// decisions is set when the template has a decision step, so only
	// such tasks look for branches to skip (decision.go).
	decisions bool
	errored   map[int]struct{}
	wake      *time.Timer
	// wakeGen numbers the arming of wake, so a timer that fired just as
	// it was replaced does nothing.
	wakeGen uint64
	done    bool
	// lastSeq is the sequence number of the task's newest committed
	// transition, so a watcher that has seen it needs no catch-up read.
	lastSeq int64
	// span traces the task while this coordinator runs it.
	span trace.Span
	// running counts steps with an attempt in flight. A finished task stays
	// in memory until it is zero, so the results of steps that were running
	// when it failed are still recorded.
	running int
	// broken means a write failed after memory was changed; until repair
	// reloads the task, events for it are refused with errRepairing.
	broken bool
	// repairing is set while a repair goroutine owns the reload of a broken
	// task, so a failure during repair never starts a second one.
	repairing bool
	// waitCounts is the task's share of tasker_steps_waiting as of the last
	// scrape that found it idle; read without mu.
	waitCounts atomic.Pointer[map[waitCount]int]
	// flow is the task's flow control (nil for none); blocked, while the
	// task is pending, is why its start was not admitted.
	flow    *taskFlow
	blocked *admission.Verdict
	// waits is the memory of the task's signals (waits.go).
	waits waitState
	// fanouts is the memory of the task's for_each steps, by step index;
	// nil for a template without one. The steps after the template's
	// (from index len(tmpl.tmpl.Steps) on) are their instances, and
	// instances[i-len] says whose (foreach.go).
	fanouts   map[int]*fanout
	instances []instanceRef
	// nextPosition is the stored position a new step (an instance) takes.
	nextPosition int
	// parentCheck is a child task's next look at whether its parent's
	// step still waits for it (children.go); nil for other tasks.
	parentCheck *time.Timer
}

// active reports whether the task must stay in memory: it is unfinished, or
// some of its steps are still running and will report.
func (tr *taskRun) active() bool {
	return tr.task.State == state.Pending || tr.task.State == state.InProgress || tr.running > 0
}

// stepRun is a step of an active task.
type stepRun struct {
	store.Step
	// executor runs the current attempt; "" if none or unknown (the
	// coordinator restarted and no heartbeat has claimed it yet).
	executor string
	// lastExecutor ran the previous attempt; a retry prefers another.
	lastExecutor string
	// dispatchedAt is when the current attempt was sent.
	dispatchedAt time.Time
	// span traces the current attempt.
	span    trace.Span
	timer   *time.Timer // fires when the current attempt times out or is presumed lost
	waiting bool        // queued in the pool for a slot
	// blocked is why the step's next attempt was not admitted; it is not
	// asked again before blocked.RetryAt, or, without one, before its key
	// frees.
	blocked *admission.Verdict
}

func newTaskRun(t *store.Task, ct *compiledTemplate, steps []*store.Step) *taskRun {
	tr := &taskRun{task: *t, tmpl: ct, byID: make(map[string]int, len(steps)), errored: map[int]struct{}{}}
	tr.steps = make([]*stepRun, len(steps))
	// One allocation for the task's steps, not one each.
	runs := make([]stepRun, len(steps))
	tr.view = make([]plan.Step, len(steps))
	n := len(ct.tmpl.Steps)
	tr.initFanouts()
	next := n // instances follow the template's steps, in stored order
	for _, s := range steps {
		tr.nextPosition = max(tr.nextPosition, s.Position+1)
		i, ok := ct.index[s.Name]
		if !ok {
			if i, ok = tr.placeInstance(s, next); !ok {
				continue // not a step this template has: placeInstance logged nothing to act on
			}
			next++
		}
		runs[i] = stepRun{Step: *s}
		tr.steps[i] = &runs[i]
		tr.byID[s.ID] = i
		if i < n {
			tr.view[i] = plan.Step{Parents: ct.parents[i], Decision: tr.isDecision(i)}
		} else {
			tr.view[i] = plan.Step{Parents: []int{tr.instances[i-n].of}, Instance: true}
		}
		tr.decisions = tr.decisions || tr.view[i].Decision
	}
	if next < len(tr.steps) { // rows that named no step of the template
		tr.steps, tr.view = tr.steps[:next], tr.view[:next]
	}
	for i := range tr.steps {
		tr.sync(i)
	}
	return tr
}

// sync refreshes the readiness view and the counters of step i after its
// stored fields changed.
func (tr *taskRun) sync(i int) {
	s, v := tr.steps[i], &tr.view[i]
	wasSettled, wasExhausted := v.State.Settled(), v.State != "" && plan.Exhausted(v)
	if wasSettled {
		tr.satisfied--
	}
	if wasExhausted {
		tr.exhausted--
	}
	v.State, v.Attempts, v.MaxAttempts, v.NextRetryAt = s.State, s.Attempts, s.MaxAttempts, s.NextRetryAt
	// A permanent failure makes the step unretryable whatever its template
	// says; an operator's retry moves it to pending, where this no longer
	// matters.
	v.Retryable = s.Retryable && (s.Error == nil || s.Error.Retryable)
	tr.syncChosen(i)
	if v.State.Settled() {
		tr.satisfied++
	}
	if plan.Exhausted(v) {
		tr.exhausted++
	}
	if s.State == state.Error {
		tr.errored[i] = struct{}{}
	} else {
		delete(tr.errored, i)
	}
	if tr.instances != nil {
		tr.countInstance(i, wasSettled, wasExhausted)
	}
}

// parentResults are the stored results of template step t's parents, by
// step name: what its for_each, until and child context expressions read.
func (tr *taskRun) parentResults(t int) map[string]json.RawMessage {
	results := make(map[string]json.RawMessage, len(tr.tmpl.parents[t]))
	for _, p := range tr.tmpl.parents[t] {
		results[tr.steps[p].Name] = tr.steps[p].Results
	}
	return results
}

// priority is the task's, or the default for a task stored without one.
func (tr *taskRun) priority() int {
	if tr.task.Priority == 0 {
		return template.DefaultPriority
	}
	return tr.task.Priority
}

// waitsToStart reports whether the task was created to start later and
// that time has not come: it stays pending, dispatching nothing.
func (tr *taskRun) waitsToStart(now time.Time) bool {
	return tr.task.State == state.Pending && now.Before(tr.task.RunAt)
}

// failedReason names the steps that failed the task.
func (tr *taskRun) failedReason() string {
	var names []string
	for i := range tr.errored {
		if plan.Exhausted(&tr.view[i]) {
			names = append(names, tr.steps[i].Name)
		}
	}
	slices.Sort(names)
	if len(names) == 1 {
		return fmt.Sprintf("step %s failed and will not be retried", names[0])
	}
	return fmt.Sprintf("steps %s failed and will not be retried", strings.Join(names, ", "))
}

// setInFlight marks whether step i has an attempt in flight, keeping the
// running count.
func (tr *taskRun) setInFlight(i int, on bool) {
	if tr.view[i].InFlight == on {
		return
	}
	tr.view[i].InFlight = on
	if on {
		tr.running++
	} else {
		tr.running--
	}
}

// change collects the transitions of one event for one task.
type change struct {
	pool     *pool
	tr       *taskRun
	params   store.TaskAdvanceParams
	dispatch []int
	cancel   []*executorv1.ExecuteRequest
	cancelOn []string // executor of each cancel
	reserved []string // executors whose slots were taken for dispatch, given back if the commit fails
	waits    []int    // ready steps with no free slot, queued once committed
	// prevs and prevTask are what dispatches subject to an admission
	// changed, put back if it is refused; gens are the release counts of
	// their keys before asking (see admissionWaits).
	prevs    []admissionPrev
	prevTask taskMoved
	gens     map[string]uint64
	// refused is the first move the state tables do not allow; a change
	// holding one is never written.
	refused error
	// gather lists the for_each steps whose instances moved, for
	// gatherForEach.
	gather []int
}

// taskMoved is what a change's move of its task to in_progress replaced:
// the task's state and update time, put back if an admission refuses the
// move. Only these two, not the whole task, so a change stays small (one
// is made for every event applied).
type taskMoved struct {
	State     state.State
	UpdatedAt time.Time
}

func (e *engine) newChange(tr *taskRun) *change {
	return &change{pool: e.pool, tr: tr, params: store.TaskAdvanceParams{TaskID: tr.task.ID, At: e.now(), Lease: e.lease.Load(), Aging: e.pool.aging}}
}

func (c *change) empty() bool {
	return c.params.Task == nil && len(c.params.Steps) == 0 && len(c.params.NewSteps) == 0
}

// moveStep records a step transition and applies it to memory at once, so
// later decisions in the same event see it. edit may set attempts, results,
// errors and metadata. A move the step table does not allow is refused: it
// changes nothing and the change is not written (see commit). A move to the
// state the step is in is a no-op.
func (c *change) moveStep(i int, to state.State, reason string, edit func(*store.StepChange)) {
	s := c.tr.steps[i]
	switch state.StepTransition(s.State, to) {
	case state.NotApplied:
		return
	case state.Refused:
		c.refuse(&state.TransitionError{Kind: "step", Name: s.Name, From: s.State, To: to})
		return
	}
	sc := &store.StepChange{
		StepID: s.ID, StepName: s.Name, From: s.State, To: to,
		ExpectAttempts: s.Attempts, Attempts: s.Attempts, Reason: reason,
	}
	if to == state.Error || to == state.Pending {
		sc.NextRetryAt = s.NextRetryAt
	}
	if edit != nil {
		edit(sc)
	}
	c.params.Steps = append(c.params.Steps, sc)
	s.State, s.Attempts, s.NextRetryAt, s.UpdatedAt = sc.To, sc.Attempts, sc.NextRetryAt, c.params.At
	if sc.MaxAttempts > 0 {
		s.MaxAttempts = sc.MaxAttempts
	}
	if sc.Results != nil {
		s.Results = sc.Results
	}
	if sc.Error != nil {
		s.Error = sc.Error
	}
	if to == state.Complete {
		s.Error = nil
	}
	c.tr.sync(i)
	if ref, ok := c.tr.instanceOf(i); ok {
		c.gather = append(c.gather, ref.of)
	}
}

// moveTask records the task's transition, checked against the task table
// like moveStep. A change holds at most one.
func (c *change) moveTask(to state.State, reason string) {
	from := c.tr.task.State
	switch state.TaskTransition(from, to) {
	case state.NotApplied:
		return
	case state.Refused:
		c.refuse(&state.TransitionError{Kind: "task", Name: c.tr.task.ID, From: from, To: to})
		return
	}
	if c.params.Task != nil {
		c.refuse(fmt.Errorf("task %s: second task transition in one change (%s, then %s)", c.tr.task.ID, c.params.Task.To, to))
		return
	}
	c.params.Task = &store.TaskChange{From: from, To: to, Reason: reason}
	c.tr.task.State = to
	c.tr.task.UpdatedAt = c.params.At
	if to == state.Complete {
		c.tr.task.CompletedAt = c.params.At
	}
}

func (c *change) refuse(err error) {
	if c.refused == nil {
		c.refused = err
	}
}

// schedule dispatches every ready step among candidates (all steps when
// candidates is nil) and settles the task when it is finished. The caller
// holds tr.mu.
func (e *engine) schedule(c *change, candidates []int) {
	tr := c.tr
	if tr.task.State != state.Pending && tr.task.State != state.InProgress {
		return
	}
	if candidates == nil {
		e.skipUntaken(c, nil) // a full pass settles branches a reload or an operator left open
	}
	if tr.fanouts != nil {
		e.expandPending(c)
		if more := e.gatherForEach(c); len(more) > 0 && candidates != nil {
			candidates = append(slices.Clip(candidates), more...)
		}
	}
	switch {
	case tr.exhausted > 0:
		if c.params.Task == nil {
			c.moveTask(state.Error, tr.failedReason())
			e.endWaits(c, "the task failed")
			e.endForEach(c, "the task failed")
			e.endChildren(c, "the task failed") // children.go
		}
		return
	case tr.satisfied == len(tr.steps):
		if c.params.Task == nil {
			switch tr.task.State {
			case state.InProgress:
				c.moveTask(state.Complete, "all steps complete")
			case state.Pending:
				// Settled with nothing run since it was last pending: an
				// operator resolved its last open steps (of a task that
				// never started, or of a failed one, which the resolve
				// made pending again). It completes through in_progress,
				// one move per change; armWake brings the next at once.
				c.moveTask(state.InProgress, "all steps settled")
			}
		}
		return
	}
	now := c.params.At
	if tr.waitsToStart(now) {
		return // armWake wakes it at its start time
	}
	if candidates == nil {
		for i := range tr.steps {
			e.tryDispatch(c, i, now)
		}
		return
	}
	for _, i := range candidates {
		e.tryDispatch(c, i, now)
	}
}

// tryDispatch reserves a slot for step i if it is ready and records its
// move to in_progress; without a slot the step waits in the pool's queue.
func (e *engine) tryDispatch(c *change, i int, now time.Time) {
	tr, s := c.tr, c.tr.steps[i]
	if s.waiting || e.draining.Load() || !plan.Ready(tr.view, i, now) {
		return
	}
	if tr.task.State == state.Pending && c.params.Task != nil {
		return // the task moves once per change; the follow-up event dispatches
	}
	if ref, ok := tr.instanceOf(i); ok && !tr.fanouts[ref.of].expanded {
		return // its list is not computed yet: expandForEach dispatches it
	}
	if blockedAt(s.blocked, now) || tr.task.State == state.Pending && blockedAt(tr.blocked, now) {
		return // a release or its retry time asks again
	}
	if waitSpec(tr, i) != nil {
		e.startWait(c, i, now) // a durable wait takes no executor slot
		return
	}
	if tr.isForEach(i) {
		e.startForEach(c, i) // its instances take the slots
		return
	}
	if childSpec(tr, i) != nil {
		e.startChild(c, i, now) // a child task takes no executor slot (children.go)
		return
	}
	executorID := e.pool.acquire(s.Handler, s.lastExecutor)
	if executorID == "" {
		s.waiting = true
		c.waits = append(c.waits, i)
		return
	}
	e.dispatchOn(c, i, executorID)
}

// dispatchOn records step i's next attempt on an executor whose slot is
// reserved, unless its request is too large for that executor.
func (e *engine) dispatchOn(c *change, i int, executorID string) {
	tr, s := c.tr, c.tr.steps[i]
	if n := e.requestEstimate(tr, i); !e.pool.fitsEverywhere(n) {
		if limit := e.pool.maxReceive(executorID); n > limit && e.oversized(tr, i, limit) {
			e.pool.release(executorID)
			e.refuseOversized(c, i, executorID, limit)
			return
		}
	}
	c.reserved = append(c.reserved, executorID)
	if tr.task.State == state.Pending {
		if a := tr.taskAdmission(); a != nil {
			c.params.Admit, c.prevTask, tr.blocked = a, taskMoved{tr.task.State, tr.task.UpdatedAt}, nil
			c.noteGens(e.admission, a)
		}
		c.moveTask(state.InProgress, "first step dispatched")
	}
	if s.State == state.Error {
		c.moveStep(i, state.Pending, fmt.Sprintf("retrying after attempt %d of %d failed", s.Attempts, s.MaxAttempts), nil)
	}
	a := tr.stepAdmission(i)
	if a != nil || c.params.Admit != nil {
		c.prevs = append(c.prevs, admissionPrev{i: i, step: s.Step})
	}
	s.blocked = nil
	meta := executorMeta(executorID)
	// Put together by hand: it is written for every dispatch.
	reason := "dispatched attempt " + strconv.Itoa(s.Attempts+1) + " to executor " + executorID
	c.moveStep(i, state.InProgress, reason, func(sc *store.StepChange) {
		sc.Attempts = s.Attempts + 1
		sc.Metadata = meta
		if sc.Admit = a; a != nil {
			c.noteGens(e.admission, a)
		}
	})
	tr.setInFlight(i, true)
	s.executor = executorID
	c.dispatch = append(c.dispatch, i)
}

// abandon gives back what c reserved when its write did not happen (or
// may not have: then a reload finds the dispatches it recorded, which were
// never sent, and they are presumed lost after the grace period).
func (c *change) abandon() {
	for _, id := range c.reserved {
		c.pool.release(id)
	}
	for _, i := range c.dispatch {
		c.tr.steps[i].executor = ""
	}
	for _, i := range c.waits {
		c.tr.steps[i].waiting = false
	}
}

// commit writes c, then acts on it. On a failed write the reserved slots
// are returned and the task is reloaded from the store, which remains the
// truth. The caller holds tr.mu.
func (e *engine) commit(ctx context.Context, c *change) error {
	tr := c.tr
	if c.refused != nil {
		// A decision broke the state tables: a bug, never written. Memory
		// may hold part of the change, so it is rebuilt from the store.
		c.abandon()
		e.log.Error("refused a transition the state tables do not allow; reloading the task", "task_id", tr.task.ID, "err", c.refused)
		e.breakTask(tr)
		return fmt.Errorf("task %s: %w", tr.task.ID, c.refused)
	}
	if c.empty() {
		e.afterCommit(c)
		return nil
	}
	if t := c.params.Task; t != nil && tr.flow != nil && t.To.Terminal() {
		c.params.Release = true // its keys are free
	}
	start := time.Now()
	trs, err := e.store.TaskAdvance(ctx, &c.params)
	e.writes.observe(e.now(), err)
	if errors.Is(err, store.ErrLeaseLost) {
		// Another coordinator owns the task now (or this one's lease
		// lapsed): forget it; its owner carries it on.
		c.abandon()
		e.metrics.fencedWrites.Inc()
		e.log.Warn("write refused: task no longer owned by this coordinator; dropping it", "task_id", tr.task.ID, "err", err)
		e.checkLease()
		e.retire(tr)
		return fmt.Errorf("task %s: %w", tr.task.ID, err)
	}
	if err != nil {
		// Memory already holds the change that was not written: it can no
		// longer be trusted, so the task is reloaded from the store.
		c.abandon()
		e.log.Error("task write failed; reloading task from the store", "task_id", tr.task.ID, "err", err)
		e.breakTask(tr)
		return fmt.Errorf("task %s: %w", tr.task.ID, err)
	}
	if len(c.params.Refused) > 0 {
		e.refused(c)
	}
	e.metrics.observeCommit(tr, c, time.Since(start))
	if n := len(trs); n > 0 {
		tr.lastSeq = trs[n-1].Seq
	}
	e.hub.publish(tr.task.ID, watchEvent{transitions: trs, before: taskStateBefore(&c.params, tr.task.State)})
	if keys := c.heldKeys(); len(keys) > 0 {
		e.keysFreed(keys)
	}
	if c.params.Task != nil && tr.task.ParentTaskID != "" {
		e.childFinished(tr) // a child tells its parent (children.go)
	}
	e.afterCommit(c)
	if len(c.params.Refused) > 0 {
		e.awaitAdmission(c)
	}
	return nil
}

// taskStateBefore is the task's state before a committed change, given its
// state after.
func taskStateBefore(p *store.TaskAdvanceParams, after state.State) state.State {
	if p.Task != nil {
		return p.Task.From
	}
	return after
}

// afterCommit sends what c dispatched and cancelled, arms timers, and retires
// a task that no longer needs to be in memory.
func (e *engine) afterCommit(c *change) {
	tr := c.tr
	for _, i := range c.dispatch {
		s := tr.steps[i]
		e.pool.track(s.executor, tr.task.ID, s.ID, int32(s.Attempts))
		req := e.executeRequest(tr, i, e.trace.startAttempt(tr, i, s.executor))
		if d := tr.tmpl.timeouts[tr.tix(i)]; d > 0 {
			e.armAttemptTimer(tr, i, d, fmt.Sprintf("attempt %d timed out after %s", s.Attempts, d))
		}
		e.pool.send(s.executor, req)
		s.dispatchedAt = time.Now()
		e.metrics.dispatchLatency.WithLabelValues(s.Handler).Observe(s.dispatchedAt.Sub(c.params.At).Seconds())
	}
	for _, i := range c.waits {
		e.pool.wait(tr.task.ID, tr.steps[i].ID, tr.steps[i].Handler, tr.priority())
	}
	for k, req := range c.cancel {
		e.pool.send(c.cancelOn[k], req)
	}
	if tr.active() {
		e.armWake(tr, c.params.At)
	} else {
		e.retire(tr)
	}
}

// requestSlack bounds what an ExecuteRequest carries besides its context,
// handler config, parents' results and for_each item (ids, names, the
// idempotency key, a deadline, trace context, field framing), generously.
const requestSlack = 16 << 10

// requestEstimate bounds the size of step i's ExecuteRequest from above by
// summing its large parts: a few additions per dispatch.
func (e *engine) requestEstimate(tr *taskRun, i int) int {
	t := tr.tix(i)
	n := len(tr.task.Context) + len(tr.tmpl.configs[t]) + requestSlack
	for _, p := range tr.tmpl.parents[t] {
		n += len(tr.steps[p].Results) + len(tr.steps[p].Name) + 16
	}
	if ref, ok := tr.instanceOf(i); ok {
		if fo := tr.fanouts[ref.of]; ref.index < len(fo.items) {
			n += len(fo.items[ref.index])
		}
	}
	return n
}

// oversized reports whether step i's ExecuteRequest, built and measured,
// would be over limit bytes; dispatch asks only when requestEstimate is
// over it.
func (e *engine) oversized(tr *taskRun, i, limit int) bool {
	return proto.Size(e.executeRequest(tr, i, nil))+requestSlack > limit
}

// refuseOversized fails step i for good instead of sending it: its request
// is over the receive limit of the executor granted for it, and a message
// over that limit ends the executor's stream, failing every attempt in
// flight on it (as "executor lost"), again at each retry. The reason says
// how large the request's parts are, so the template or its data can be
// changed; an operator's retry or rerun tries again.
func (e *engine) refuseOversized(c *change, i int, executorID string, limit int) {
	tr, s := c.tr, c.tr.steps[i]
	size := proto.Size(e.executeRequest(tr, i, nil))
	var parts []string
	if n := len(tr.task.Context); n > 0 {
		parts = append(parts, "context "+byteSize(n))
	}
	for _, p := range tr.tmpl.parents[tr.tix(i)] {
		if n := len(tr.steps[p].Results); n > 0 {
			parts = append(parts, "results of "+tr.steps[p].Name+" "+byteSize(n))
		}
	}
	msg := fmt.Sprintf("its request to executor %s would be %s, over the %s that executor accepts (%s); raise the executor's limit (max_receive_bytes in its Describe; executor.Config.MaxReceiveBytes in Go) or pass less data to the step",
		executorID, byteSize(size), byteSize(limit), strings.Join(parts, ", "))
	serr := &store.StepError{Message: msg, Class: "InputTooLarge"}
	raw, _ := json.Marshal(failureMeta{Executor: executorID, Error: msg, ErrorClass: serr.Class})
	if s.State == state.Error {
		c.moveStep(i, state.Pending, fmt.Sprintf("retrying after attempt %d of %d failed", s.Attempts, s.MaxAttempts), nil)
	}
	c.moveStep(i, state.Error, "not dispatched, not retried: "+msg, func(sc *store.StepChange) {
		sc.Error = serr
		sc.Metadata = raw
		sc.NextRetryAt = c.params.At
	})
	e.log.Warn("step not dispatched: request over the executor's receive limit", "task_id", tr.task.ID, "step_id", s.ID,
		"executor_id", executorID, "bytes", size, "limit", limit)
}

// byteSize writes n bytes for people: 512 B, 3.0 KiB, 6.0 MiB.
func byteSize(n int) string {
	switch {
	case n < 1<<10:
		return strconv.Itoa(n) + " B"
	case n < 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

func (e *engine) executeRequest(tr *taskRun, i int, traceContext map[string]string) *executorv1.ExecuteRequest {
	s, t := tr.steps[i], tr.tix(i)
	var parents map[string][]byte // a root's stays nil: nothing to allocate
	if n := len(tr.tmpl.parents[t]); n > 0 {
		parents = make(map[string][]byte, n)
	}
	for _, p := range tr.tmpl.parents[t] {
		ps := tr.steps[p]
		res := ps.Results
		if res == nil {
			res = json.RawMessage("null")
		}
		parents[ps.Name] = res
	}
	step := &executorv1.ExecuteStep{
		TaskId: tr.task.ID, StepId: s.ID, StepName: s.Name, Handler: s.Handler,
		Attempt: int32(s.Attempts), HandlerConfig: tr.tmpl.configs[t], Context: tr.task.Context,
		ParentResults: parents, Namespace: tr.task.Namespace, TemplateName: tr.task.Name,
		TemplateVersion: tr.task.Version, TraceContext: traceContext,
		IdempotencyKey: idempotencyKey(tr.task.ID, s.ID, s.Generation), ForEach: forEachItem(tr, i),
	}
	if d := tr.tmpl.timeouts[t]; d > 0 {
		step.Deadline = timestamppb.New(e.now().Add(d))
	}
	return &executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_ExecuteStep{ExecuteStep: step}}
}

// armAttemptTimer fails step i's current attempt as retryable if it has not
// settled within d.
func (e *engine) armAttemptTimer(tr *taskRun, i int, d time.Duration, reason string) {
	s := tr.steps[i]
	if s.timer != nil {
		s.timer.Stop()
	}
	taskID, stepID, attempt := tr.task.ID, s.ID, int32(s.Attempts)
	s.timer = e.bg.afterFunc(d, func() { e.failAttempt(taskID, stepID, attempt, "Timeout", reason) })
}

// armWake sets the task's timer for the earliest retry of an errored step,
// so a task waiting on a backoff wakes by itself at the right moment. A step
// queued for an executor slot is not waiting on time: the slot's release
// wakes it, so it arms nothing (a due retry would otherwise fire the timer
// at once, again and again, until a slot frees).
//
// asOf is the time the caller's decisions were made at (a change's time,
// or when a write began): a task that waited to start then is woken at its
// start time even if that has passed since, for then nothing has tried to
// start it, and nothing else would (a write that took longer than a short
// delay left debounced and delayed tasks pending for good).
func (e *engine) armWake(tr *taskRun, asOf time.Time) {
	var at time.Time
	if tr.waitsToStart(asOf) {
		at = tr.task.RunAt
	}
	if tr.task.State == state.Pending || tr.task.State == state.InProgress {
		earliest := func(t time.Time) {
			if !t.IsZero() && (at.IsZero() || t.Before(at)) {
				at = t
			}
		}
		if tr.blocked != nil && tr.task.State == state.Pending {
			earliest(tr.blocked.RetryAt)
		}
		if tr.flow != nil {
			for _, s := range tr.steps {
				if s.blocked != nil && !s.waiting {
					earliest(s.blocked.RetryAt)
				}
			}
		}
		earliest(e.nextWaitWake(tr))
		if tr.unexpanded() || tr.exhausted > 0 || tr.satisfied == len(tr.steps) {
			// Instances to make, or a step that failed for good or a last
			// step settled in a change that could not also end the task
			// (the one that started it, one that refused a dispatch in the
			// middle of a pass, or one that resumed it).
			earliest(e.now())
		}
		for i := range tr.errored {
			v := &tr.view[i]
			if plan.Retriable(v) && !v.InFlight && !tr.steps[i].waiting && (at.IsZero() || v.NextRetryAt.Before(at)) {
				at = v.NextRetryAt
			}
		}
	}
	if tr.wake != nil {
		tr.wake.Stop()
		tr.wake = nil
	}
	if at.IsZero() {
		return
	}
	tr.wakeGen++
	taskID, gen := tr.task.ID, tr.wakeGen
	tr.wake = e.bg.afterFunc(max(time.Until(at), 0), func() { e.wakeTask(taskID, gen) })
}

func (e *engine) wakeTask(taskID string, gen uint64) {
	tr := e.lookup(taskID)
	if tr == nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.done || tr.broken || gen != tr.wakeGen {
		return // replaced, or repair re-arms the timer
	}
	e.metrics.wakes.Inc()
	tr.wake = nil
	c := e.newChange(tr)
	var cands []int // nil: every step, for a task whose start time came or that waits on an admission
	if (tr.task.State != state.Pending || tr.task.RunAt.IsZero()) && tr.flow == nil {
		cands = make([]int, 0, len(tr.errored))
		for i := range tr.errored {
			cands = append(cands, i)
		}
	}
	e.settleWaits(c)
	e.schedule(c, cands)
	if err := e.commit(e.ctx, c); err != nil {
		e.log.Error("retry dispatch failed", "task_id", taskID, "err", err)
	}
}

// retire drops a finished task from memory: nothing about it is needed on
// the hot path any more.
func (e *engine) retire(tr *taskRun) {
	if tr.done {
		return
	}
	tr.done = true
	if tr.wake != nil {
		tr.wake.Stop()
	}
	if tr.parentCheck != nil {
		tr.parentCheck.Stop()
	}
	for _, s := range tr.steps {
		if s.timer != nil {
			s.timer.Stop()
		}
		e.trace.endAttempt(s, "")
	}
	e.trace.endTask(tr)
	e.mu.Lock()
	delete(e.tasks, tr.task.ID)
	e.mu.Unlock()
}

// current reports the state of an active task whose newest transition has
// a sequence number of at most seen; ok is false otherwise (not active here,
// or the caller has something to catch up on).
func (e *engine) current(taskID string, seen int64) (st state.State, ok bool) {
	tr := e.lookup(taskID)
	if tr == nil {
		return "", false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.done || tr.broken || tr.lastSeq == 0 || tr.lastSeq > seen {
		return "", false
	}
	return tr.task.State, true
}

func (e *engine) lookup(taskID string) *taskRun {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tasks[taskID]
}

// watchInFlight arms a timer on every in_progress step of a freshly loaded
// task: one whose executor is known gets its timeout, one whose executor is
// unknown (the coordinator restarted) is presumed lost unless its result
// arrives within the grace period. The caller holds tr.mu.
func (e *engine) watchInFlight(tr *taskRun) {
	e.loadSignals(tr)
	for i, s := range tr.steps {
		if s.State != state.InProgress {
			continue
		}
		if tr.isForEach(i) {
			continue // its instances run; expandPending puts them back in place
		}
		tr.setInFlight(i, true)
		if tr.waiting(i) {
			continue // a durable wait: armWake wakes it when it ends
		}
		if tr.childRunning(i) {
			e.watchChild(tr, i, 0) // looks at its child: creates it if missing, settles if finished (children.go)
			continue
		}
		switch timeout := tr.tmpl.timeouts[tr.tix(i)]; {
		case s.executor == "":
			e.armAttemptTimer(tr, i, e.grace+timeout, fmt.Sprintf("attempt %d presumed lost: no executor reported it within %s", s.Attempts, e.grace+timeout))
		case timeout > 0:
			e.armAttemptTimer(tr, i, timeout, fmt.Sprintf("attempt %d timed out after %s", s.Attempts, timeout))
		}
	}
}

// jitter returns a random number in [0, 1) for backoff spreading.
func jitter() float64 { return rand.Float64() }

// drain stops dispatching and waits until every attempt in flight has
// reported and its result is applied, or ctx ends.
func (e *engine) drain(ctx context.Context) error {
	e.draining.Store(true)
	idle := e.pool.whenIdle()
	select {
	case <-idle:
		return nil
	default:
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		e.log.Warn("shutdown deadline passed with attempts in flight; the next start settles them", "in_flight", e.pool.inFlight())
		return ctx.Err()
	}
}

// stop retires every task from memory, closes the pool and waits for every
// goroutine the engine started. The engine's context must be cancelled
// first.
func (e *engine) stop() {
	e.mu.Lock()
	tasks := e.tasks
	e.tasks = map[string]*taskRun{}
	e.mu.Unlock()
	for _, tr := range tasks {
		tr.mu.Lock()
		tr.done = true
		if tr.wake != nil {
			tr.wake.Stop()
		}
		if tr.parentCheck != nil {
			tr.parentCheck.Stop()
		}
		for _, s := range tr.steps {
			if s.timer != nil {
				s.timer.Stop()
			}
		}
		tr.mu.Unlock()
	}
	e.pool.close()
	e.bg.close()
}
