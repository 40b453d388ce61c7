package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// pendingResult is a result waiting for its task's lock. Results that
// arrive while the task is busy committing are applied together by the
// next one to get the lock, in one transaction: a fan-out of a thousand
// steps then costs a handful of commits, not a thousand in a row.
type pendingResult struct {
	r *executorv1.StepResult
	// from is the executor the result is accounted to: the one whose
	// stream carried it, or the one its attempt was sent to; "" if
	// unknown. The executor id inside the message is only logged.
	from string
	// streamed is set for a result read from an executor's stream, which
	// must be the stream of the executor running the attempt.
	streamed bool
	// grant, instead of r, is a freed executor slot reserved for a waiting
	// step of the task; it batches the same way.
	grant      *waiter
	executorID string

	applied bool
	err     error
	done    chan struct{}
}

func newPendingResult(r *executorv1.StepResult, from string) *pendingResult {
	return &pendingResult{r: r, from: from, done: make(chan struct{})}
}

// checkResult refuses a result that names no step attempt or no outcome.
func checkResult(r *executorv1.StepResult) error {
	if r.GetTaskId() == "" || r.GetStepId() == "" || r.GetAttempt() < 1 {
		return invalidf("result: task_id, step_id and a positive attempt are required")
	}
	if r.GetSuccess() == nil && r.GetFailure() == nil {
		return invalidf("result for step %s: outcome must be success or failure", r.GetStepId())
	}
	return nil
}

// applyReported applies a result reported through the API (an executor's
// stream broke before it could send it): its slot is freed on whichever
// executor the attempt was sent to. It returns once the outcome is
// committed; a duplicate or stale result changes nothing and reports
// applied=false.
//
// A result for a task this coordinator does not hold in memory is routed
// like an operator's action: a task with work left is taken into this
// coordinator's ownership if its owner is gone (or is this coordinator),
// and a task another live coordinator owns is answered with a
// *store.OwnedError, so the caller forwards the result there. A finished
// task has no step left to settle: the result is acknowledged and ignored.
func (e *engine) applyReported(ctx context.Context, r *executorv1.StepResult) (applied bool, err error) {
	if err := checkResult(r); err != nil {
		return false, err
	}
	if e.ctx.Err() != nil {
		// Stopped: the executor reports it again to the next run, or to
		// another coordinator.
		return false, ErrStopped
	}
	from := e.pool.settleReported(attemptKey{r.GetStepId(), r.GetAttempt()})
	defer e.pool.applied(1)
	if e.lookup(r.GetTaskId()) == nil {
		t, err := e.store.TaskGet(ctx, r.GetTaskId())
		switch {
		case errors.Is(err, store.ErrNotFound):
			e.metrics.results.WithLabelValues("ignored").Inc()
			return false, nil
		case err != nil:
			return false, err
		case t.State == state.Complete || t.State == state.Cancelled || t.State == state.ResolvedManually:
			e.metrics.results.WithLabelValues("ignored").Inc()
			return false, nil
		}
		if _, err := e.bring(ctx, r.GetTaskId()); err != nil {
			return false, err
		}
	}
	return e.applyResult(r, from, false)
}

// applyResult applies a step result if, and only if, the step is in flight
// on that same attempt.
func (e *engine) applyResult(r *executorv1.StepResult, from string, streamed bool) (applied bool, err error) {
	tr := e.lookup(r.GetTaskId())
	if tr == nil {
		e.metrics.results.WithLabelValues("ignored").Inc()
		return false, nil // finished, unknown or owned elsewhere: nothing to apply
	}
	p := newPendingResult(r, from)
	p.streamed = streamed
	e.enqueue(tr, p)
	return p.applied, p.err
}

// results implements poolEvents: a run of results read from one executor's
// stream, in order. Each task's results are applied in one change, tasks in
// parallel so their writes share group commits; it returns when all are
// committed. A result that could not be committed (the store is busy or
// down) is held and retried on a goroutine of its own rather than dropped,
// so the stream goes on; if the coordinator dies meanwhile, the attempt is
// presumed lost after restart and runs again.
func (e *engine) results(executorID string, rs []*executorv1.StepResult) {
	byTask := map[string][]*pendingResult{}
	var order []string
	var all []*pendingResult
	for _, r := range rs {
		if err := checkResult(r); err != nil {
			e.log.Warn("result refused", "executor_id", executorID, "err", err)
			continue
		}
		p := newPendingResult(r, executorID)
		p.streamed = true
		if byTask[r.GetTaskId()] == nil {
			order = append(order, r.GetTaskId())
		}
		byTask[r.GetTaskId()] = append(byTask[r.GetTaskId()], p)
		all = append(all, p)
	}
	var wg sync.WaitGroup
	for _, id := range order {
		ps := byTask[id]
		tr := e.lookup(id)
		if tr == nil {
			for _, p := range ps {
				e.routeResult(p.r, executorID)
				close(p.done)
			}
			continue
		}
		wg.Add(1)
		if len(order) == 1 || !e.bg.goFn(func() { defer wg.Done(); e.enqueue(tr, ps...) }) {
			e.enqueue(tr, ps...)
			wg.Done()
		}
	}
	wg.Wait()
	for _, p := range all {
		if p.err != nil {
			e.holdResult(p, executorID)
		}
	}
}

// holdResult retries a streamed result whose commit failed, with backoff,
// until it is applied, refused for good, or the coordinator stops.
func (e *engine) holdResult(p *pendingResult, executorID string) {
	r := p.r
	var ce *codedError
	switch {
	case errors.Is(p.err, store.ErrLeaseLost):
		// The task was dropped here: another coordinator owns it now (or
		// will, this one's lease having lapsed).
		e.routeResult(r, executorID)
		return
	case errors.As(p.err, &ce):
		e.log.Warn("result refused", "task_id", r.GetTaskId(), "step_id", r.GetStepId(), "attempt", r.GetAttempt(), "err", p.err)
		return
	}
	e.goHolding(r, func() {
		wait := 50 * time.Millisecond
		timer := time.NewTimer(wait)
		defer timer.Stop()
		err := p.err
		for {
			e.log.Error("apply result failed; will retry", "task_id", r.GetTaskId(), "step_id", r.GetStepId(), "attempt", r.GetAttempt(), "retry_in", wait, "err", err)
			select {
			case <-e.ctx.Done():
				return
			case <-timer.C:
			}
			if e.lookup(r.GetTaskId()) == nil {
				// The task was dropped meanwhile (the lease lapsed while
				// the store took no writes): settled like a result for a
				// task held elsewhere, which takes the task back here once
				// its owner is gone, rather than left for the attempt to
				// be presumed lost and run again.
				e.routeResult(r, executorID)
				return
			}
			_, err = e.applyResult(r, executorID, true)
			if errors.Is(err, store.ErrLeaseLost) {
				e.routeResult(r, executorID)
				return
			}
			if err == nil || errors.As(err, &ce) {
				return
			}
			wait = min(2*wait, 5*time.Second)
			timer.Reset(wait)
		}
	})
}

// routeWait bounds how long routeResult keeps trying to settle a result:
// long enough for this coordinator to notice a lapsed lease and start over
// (it renews at once after a refused write, else within a third of the
// lease's life) and for a forward to reach the owner.
func (e *engine) routeWait() time.Duration { return 2 * e.leaseTTL }

// routeResult settles, on a goroutine of its own so the stream reads on, a
// streamed result for a task this coordinator does not hold. An executor
// sends a result on the stream of the coordinator that dispatched the
// attempt, and that is not always the task's owner: after a takeover, the
// new owner adopts the attempt from the executor's heartbeats while its
// result still arrives here. So the result is settled as a reported one
// (applyReported): ignored if the task has finished, applied here if its
// owner is gone (this coordinator takes the task), and forwarded if another
// live coordinator owns it. Dropping it instead would leave the owner to
// find the attempt missing from the executor's heartbeats and run it again
// (ResultLost, slots.go), which remains the way out if the forward fails.
// Refusals that time can clear (this coordinator's lease lapsed and it has
// not started over yet; the task moved while forwarding; the store is
// unavailable) are retried until routeWait.
//
// A store that takes no writes (a full disk, a database failing over) is
// waited for however long it takes, as holdResult waits: the deadline runs
// only while the store answers and this coordinator holds a live lease
// (without one, which it cannot renew while the store takes no writes, it
// cannot tell who owns the task).
func (e *engine) routeResult(r *executorv1.StepResult, executorID string) {
	e.goHolding(r, func() {
		deadline := time.Now().Add(e.routeWait())
		wait := 20 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(e.ctx, e.routeWait())
			_, err := e.applyReported(ctx, r)
			var owned *store.OwnedError
			if errors.As(err, &owned) && e.forwardResult != nil {
				if err = e.forwardResult(ctx, owned, r); err == nil {
					cancel()
					e.log.Info("streamed result forwarded to the task's owner", "task_id", r.GetTaskId(), "step_id", r.GetStepId(),
						"attempt", r.GetAttempt(), "executor_id", executorID, "owner", owned.Owner.CoordinatorID)
					return
				}
			}
			cancel()
			if err == nil || !routeRetryable(err) {
				if err != nil && !errors.Is(err, ErrStopped) {
					e.log.Warn("streamed result for a task held elsewhere not settled; its owner runs the attempt again once the executor stops listing it",
						"task_id", r.GetTaskId(), "step_id", r.GetStepId(), "attempt", r.GetAttempt(), "executor_id", executorID, "err", err)
				}
				return
			}
			if errors.Is(err, store.ErrUnavailable) || !e.leaseLive() {
				deadline = time.Now().Add(e.routeWait())
			}
			if !time.Now().Before(deadline) {
				e.log.Warn("streamed result for a task held elsewhere not settled in time; its owner runs the attempt again once the executor stops listing it",
					"task_id", r.GetTaskId(), "step_id", r.GetStepId(), "attempt", r.GetAttempt(), "executor_id", executorID, "err", err)
				return
			}
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, time.Second)
		}
	})
}

// routeRetryable says whether routeResult should try a result again after
// err: a lease not yet renewed, a task held elsewhere that moved, a store
// or peer that cannot answer now. A refusal of the result itself, or of
// this coordinator's credentials by the owner, stays a refusal.
func routeRetryable(err error) bool {
	var ce *codedError
	if errors.As(err, &ce) || errors.Is(err, ErrStopped) {
		return false
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition,
			codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented:
			return false
		}
	}
	return true
}

// enqueue queues ps for tr and waits until they have been applied, by this
// call or by the call that held the task's lock before it.
func (e *engine) enqueue(tr *taskRun, ps ...*pendingResult) {
	tr.qmu.Lock()
	tr.queue = append(tr.queue, ps...)
	tr.qmu.Unlock()

	tr.mu.Lock()
	defer tr.mu.Unlock()
	select {
	case <-ps[len(ps)-1].done:
		return // whoever held the lock took them with its batch
	default:
	}
	tr.qmu.Lock()
	batch := tr.queue
	tr.queue = nil
	tr.qmu.Unlock()
	e.applyResults(tr, batch)
}

// applyResults applies a batch of results to a task in one change and one
// commit, and answers each. The caller holds tr.mu.
func (e *engine) applyResults(tr *taskRun, batch []*pendingResult) {
	defer func() {
		for _, p := range batch {
			close(p.done)
		}
	}()
	if tr.broken {
		for _, p := range batch {
			if p.grant != nil {
				e.pool.release(p.executorID)
			}
			p.err = errRepairing
		}
		return
	}
	c := e.newChange(tr)
	for _, p := range batch {
		if p.grant != nil {
			e.useSlot(c, p.grant, p.executorID)
			continue
		}
		p.applied = !tr.done && e.applyOne(c, p)
	}
	if err := e.commit(e.ctx, c); err != nil {
		for _, p := range batch {
			p.applied, p.err = false, err
		}
		return
	}
	for _, p := range batch {
		switch {
		case p.grant != nil:
		case p.applied:
			e.metrics.results.WithLabelValues("applied").Inc()
		default:
			e.metrics.results.WithLabelValues("ignored").Inc()
		}
	}
}

// applyOne records one result in c if its step is in flight on that
// attempt, and reports whether it did.
func (e *engine) applyOne(c *change, p *pendingResult) bool {
	tr, r := c.tr, p.r
	i, ok := tr.byID[r.GetStepId()]
	if !ok {
		return false
	}
	s := tr.steps[i]
	if tr.childRunning(i) {
		// A step running a child task takes no result: a report for it
		// (a child's coordinator telling of the child's end) only makes
		// this owner look at the child (children.go).
		e.watchChild(tr, i, 0)
		return false
	}
	if key := failedChildKey(tr, i); key != "" {
		// The same, after the step failed with its child: the child may
		// have completed since (settleFailedChild).
		parentID, stepID := tr.task.ID, s.ID
		e.bg.goFn(func() {
			if _, err := e.settleFailedChild(e.ctx, parentID, stepID, key); err != nil {
				e.log.Warn("could not look at a failed child step's child", "task_id", parentID, "step_id", stepID, "err", err)
			}
		})
		return false
	}
	if s.State != state.InProgress || int32(s.Attempts) != r.GetAttempt() {
		return false
	}
	if waitSpec(tr, i) != nil {
		// A wait runs on no executor: only its signal or its time ends it.
		e.log.Warn("result ignored: the step waits for a signal or a time, not for an executor",
			"task_id", tr.task.ID, "step_id", s.ID, "attempt", s.Attempts, "from", p.from)
		return false
	}
	if p.streamed && s.executor != "" && s.executor != p.from {
		// Another executor's stream carried it: a bug or a forgery. The
		// attempt's own executor still runs it and will report.
		e.log.Warn("result ignored: it came on the stream of an executor not running the attempt",
			"task_id", tr.task.ID, "step_id", s.ID, "attempt", s.Attempts, "running_on", s.executor, "stream_of", p.from)
		return false
	}
	if !s.dispatchedAt.IsZero() {
		e.metrics.stepDuration.WithLabelValues(s.Handler).Observe(time.Since(s.dispatchedAt).Seconds())
	}
	failure := ""
	if f := r.GetFailure(); f != nil {
		failure = f.GetMessage()
	}
	e.settleAttempt(tr, i, failure)
	from := p.from
	if from == "" {
		from = r.GetExecutorId() // reported through the API for an attempt no stream here knew
	}
	meta := executorMeta(from)
	if ok := r.GetSuccess(); ok != nil {
		results := ok.GetResults()
		if len(results) == 0 {
			results = []byte("{}")
		}
		switch {
		case len(results) > e.limits.MaxResultBytes:
			e.failStep(c, i, &store.StepError{
				Message: fmt.Sprintf("results are %d bytes, over the limit of %d bytes (max_result_bytes)", len(results), e.limits.MaxResultBytes),
				Class:   "ResultTooLarge",
			}, 0, from)
		case !json.Valid(results):
			e.failStep(c, i, &store.StepError{Message: "results are not valid JSON", Class: "InvalidResult"}, 0, from)
		default:
			if err := tr.checkDecision(i, results); err != nil {
				e.failDecision(c, i, err, from)
				break
			}
			c.moveStep(i, state.Complete, "attempt "+strconv.Itoa(s.Attempts)+" succeeded", func(sc *store.StepChange) {
				sc.Results = results
				sc.Metadata = meta
			})
			// A decision's skips go into the same change as its result.
			e.schedule(c, e.skipUntaken(c, tr.childrenOf(i)))
		}
		return true
	}
	f := r.GetFailure()
	e.failStep(c, i, &store.StepError{Message: f.GetMessage(), Class: f.GetErrorClass(), Retryable: !f.GetPermanent()},
		f.GetBackoff().AsDuration(), from)
	return true
}

// failStep records the failure of step i's current attempt. A retryable
// failure with attempts left waits for its backoff; otherwise the step is
// exhausted and schedule fails the task.
func (e *engine) failStep(c *change, i int, serr *store.StepError, requested time.Duration, executorID string) {
	tr, s := c.tr, c.tr.steps[i]
	if !s.Retryable {
		serr.Retryable = false
	}
	var delay time.Duration
	retrying := serr.Retryable && s.Attempts < s.MaxAttempts
	if retrying {
		delay = plan.RetryDelay(tr.tmpl.backoff[tr.tix(i)], s.Attempts, requested, jitter())
	}
	meta := failureMeta{Executor: executorID, Error: serr.Message, ErrorClass: serr.Class}
	if retrying {
		meta.RetryAt = c.params.At.Add(delay).Format(time.RFC3339Nano)
	}
	raw, _ := json.Marshal(meta)
	c.moveStep(i, state.Error, failureReason(s.Attempts, s.MaxAttempts, serr.Retryable, delay, serr.Message), func(sc *store.StepChange) {
		sc.Error = serr
		sc.Metadata = raw
		sc.NextRetryAt = c.params.At.Add(delay)
	})
	e.schedule(c, []int{i})
}

// failureMeta is the metadata of a failed attempt's transition: where it
// ran and what failed, and when its retry is due, so readers of history
// (analytics, the dashboard) need not parse the reason text.
type failureMeta struct {
	Executor   string `json:"executor,omitempty"`
	Error      string `json:"error"`
	ErrorClass string `json:"error_class,omitempty"`
	RetryAt    string `json:"retry_at,omitempty"`
}

// failureReason says what a failed attempt means for its step: it is
// retried after retryIn, it has no attempt left, or its failure is
// permanent and no attempt count matters.
func failureReason(attempt, maxAttempts int, retryable bool, retryIn time.Duration, msg string) string {
	switch {
	case !retryable:
		return fmt.Sprintf("attempt %d failed permanently, not retried: %s", attempt, msg)
	case attempt >= maxAttempts:
		return fmt.Sprintf("attempt %d of %d failed, no attempt left: %s", attempt, maxAttempts, msg)
	default:
		return fmt.Sprintf("attempt %d of %d failed, retrying in %s: %s", attempt, maxAttempts, retryIn.Round(time.Millisecond), msg)
	}
}

// settleAttempt forgets the executor and timer of step i's current attempt.
func (e *engine) settleAttempt(tr *taskRun, i int, failure string) {
	s := tr.steps[i]
	e.trace.endAttempt(s, failure)
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.executor != "" {
		s.lastExecutor = s.executor
	}
	s.executor = ""
	tr.setInFlight(i, false)
}

// failAttempt fails an attempt that timed out or whose executor was lost,
// as retryable, and asks its executor (if known) to abandon it.
func (e *engine) failAttempt(taskID, stepID string, attempt int32, class, reason string) {
	tr := e.lookup(taskID)
	if tr == nil {
		return
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	i, ok := tr.byID[stepID]
	if !ok || tr.done || tr.broken {
		return // a broken task is reloaded and its timers re-armed
	}
	s := tr.steps[i]
	if s.State != state.InProgress || int32(s.Attempts) != attempt {
		return
	}
	if e.held.has(attemptKey{stepID, attempt}) {
		// Its result is here, waiting for the store: it settles the
		// attempt once written. Looked at again a grace period on, in
		// case it never is.
		e.log.Info("attempt not failed: its result is held until the store takes it", "task_id", taskID, "step_id", stepID,
			"attempt", attempt, "reason", reason)
		e.armAttemptTimer(tr, i, e.grace, reason)
		return
	}
	c := e.newChange(tr)
	if s.executor != "" {
		c.cancel = append(c.cancel, cancelRequest(taskID, stepID, attempt, reason))
		c.cancelOn = append(c.cancelOn, s.executor)
	}
	e.settleAttempt(tr, i, reason)
	e.failStep(c, i, &store.StepError{Message: reason, Class: class, Retryable: true}, 0, s.lastExecutor)
	if err := e.commit(e.ctx, c); err != nil {
		e.log.Error("failing attempt failed", "task_id", taskID, "step_id", stepID, "attempt", attempt, "err", err)
	}
}

func cancelRequest(taskID, stepID string, attempt int32, reason string) *executorv1.ExecuteRequest {
	return &executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_CancelStep{CancelStep: &executorv1.CancelStep{
		TaskId: taskID, StepId: stepID, Attempt: attempt, Reason: reason,
	}}}
}

// lost implements poolEvents.
func (e *engine) lost(taskID, stepID string, attempt int32, executorID string) {
	e.failAttempt(taskID, stepID, attempt, "ExecutorLost", fmt.Sprintf("executor %s was lost while running attempt %d", executorID, attempt))
}

// unreported implements poolEvents.
func (e *engine) unreported(taskID, stepID string, attempt int32, executorID string) {
	e.failAttempt(taskID, stepID, attempt, "ResultLost", fmt.Sprintf(
		"attempt %d ended on executor %s with no result here: adopted from another coordinator's dispatch, its result went there", attempt, executorID))
}

// slot implements poolEvents: a freed slot on an executor was reserved for
// w.
func (e *engine) slot(w waiter, executorID string) {
	tr := e.lookup(w.taskID)
	if tr == nil {
		e.pool.release(executorID)
		return
	}
	e.enqueue(tr, &pendingResult{grant: &w, executorID: executorID, done: make(chan struct{})})
}

// useSlot dispatches a waiting step on the slot reserved for it, or gives
// the slot back when the step no longer wants it.
func (e *engine) useSlot(c *change, w *waiter, executorID string) {
	tr := c.tr
	i, ok := tr.byID[w.stepID]
	if !ok || tr.done || e.draining.Load() {
		e.pool.release(executorID)
		return
	}
	tr.steps[i].waiting = false
	if tr.task.State != state.Pending && tr.task.State != state.InProgress || !plan.Ready(tr.view, i, c.params.At) {
		e.pool.release(executorID)
		return
	}
	e.dispatchOn(c, i, executorID)
}

// running implements poolEvents: an executor reports the attempts it runs.
// An in-flight step whose executor was unknown (the coordinator restarted)
// is claimed by it, so its result is awaited instead of presumed lost.
func (e *engine) running(executorID string, attempts []*executorv1.RunningStep) {
	for _, a := range attempts {
		tr := e.lookup(a.GetTaskId())
		if tr == nil {
			continue
		}
		tr.mu.Lock()
		if i, ok := tr.byID[a.GetStepId()]; ok && !tr.done && !tr.broken {
			s := tr.steps[i]
			if s.State == state.InProgress && int32(s.Attempts) == a.GetAttempt() && s.executor == "" && waitSpec(tr, i) == nil && childSpec(tr, i) == nil &&
				e.pool.adopt(executorID, tr.task.ID, s.ID, a.GetAttempt()) {
				s.executor = executorID
				if s.timer != nil {
					s.timer.Stop()
					s.timer = nil
				}
				if d := tr.tmpl.timeouts[tr.tix(i)]; d > 0 {
					e.armAttemptTimer(tr, i, d, fmt.Sprintf("attempt %d timed out after %s", s.Attempts, d))
				}
				e.log.Info("adopted running attempt", "task_id", tr.task.ID, "step_id", s.ID, "attempt", s.Attempts, "executor_id", executorID)
			}
		}
		tr.mu.Unlock()
	}
}

// executorMeta is the metadata of a transition an executor caused,
// {"executor": id}. It is written for every dispatch and result, so it is
// put together directly rather than by encoding a map (4 % of the
// coordinator's CPU at 500 tasks in flight).
func executorMeta(id string) json.RawMessage {
	b := make([]byte, 0, len(id)+15)
	b = append(b, `{"executor":`...)
	if plainJSON(id) {
		// Every executor id seen in practice: quoting it is all the
		// encoding there is, done for every dispatch and every result.
		b = append(append(append(b, '"'), id...), '"')
	} else {
		q, _ := json.Marshal(id) // a string always encodes
		b = append(b, q...)
	}
	return append(b, '}')
}

// plainJSON reports whether s encodes in JSON, as encoding/json writes it,
// as itself between quotes: printable ASCII, none of it escaped.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
