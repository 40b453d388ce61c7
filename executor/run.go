package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// runKey identifies one attempt; CancelStep addresses attempts this way.
type runKey struct {
	stepID  string
	attempt int32
}

// run is one admitted attempt. Its fields are set before it is admitted
// and never change, except started.
type run struct {
	key     runKey
	req     *Request
	handler HandlerFunc
	// sess is the stream the step came on; its result goes back there when
	// that stream is still open.
	sess *session
	// ctx carries the step's deadline from admission on, so a step that
	// waited for a slot past its deadline never starts its handler.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// stopDeadline releases the deadline timer, if any.
	stopDeadline context.CancelFunc
	// log is the executor's logger; records about the run go through
	// logAt, which adds the step's attributes.
	log *slog.Logger
	// started says the run holds a slot (counted in Executor.active);
	// guarded by Executor.mu.
	started bool
}

// cancelError is the cancellation cause of a handler ctx, so the result can
// say who cancelled it and why.
type cancelError struct {
	reason   string
	shutdown bool
}

func (c *cancelError) Error() string {
	switch {
	case c.shutdown:
		return "cancelled: executor shutting down"
	case c.reason != "":
		return "cancelled by coordinator: " + c.reason
	default:
		return "cancelled by coordinator"
	}
}

// logStep logs a record about req's step at level, the step's attributes
// first. They are added to each record rather than to a logger made with
// Logger.With for every step: With formats them at once, which was a
// tenth of an executor's CPU under load, for records rarely written.
func logStep(log *slog.Logger, req *Request, level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := make([]any, 0, 10+len(args))
	attrs = append(attrs, "task_id", req.TaskID, "step_id", req.StepID, "attempt", req.Attempt,
		"step_name", req.StepName, "handler", req.Handler)
	log.Log(ctx, level, msg, append(attrs, args...)...)
}

// logAt logs a record about the run's step (see logStep).
func (r *run) logAt(level slog.Level, msg string, args ...any) {
	logStep(r.log, r.req, level, msg, args...)
}

// startStep admits one ExecuteStep, or answers it at once with a failure
// when it cannot run here. An admitted step starts at once when a slot is
// free and otherwise waits for one (see capacity.go).
func (e *Executor) startStep(s *session, step *executorv1.ExecuteStep) {
	req := newRequest(step)
	key := runKey{stepID: step.GetStepId(), attempt: step.GetAttempt()}

	e.mu.Lock()
	h, known := e.handlers[req.Handler]
	var refusal *executorv1.StepFailure
	switch {
	case e.admitted[key] != nil:
		e.mu.Unlock()
		// The admitted attempt will answer; a second result could only
		// confuse the coordinator.
		logStep(e.log, req, slog.LevelWarn, "ignoring duplicate ExecuteStep for an attempt already here")
		return
	case e.shuttingDown:
		refusal = &executorv1.StepFailure{Message: "executor is shutting down", ErrorClass: ClassShuttingDown}
	case !known:
		refusal = &executorv1.StepFailure{
			Message:    fmt.Sprintf("unknown handler %q: executor %s hosts %s", req.Handler, e.cfg.ID, strings.Join(e.sortedHandlersLocked(), ", ")),
			ErrorClass: ClassUnknownHandler,
			Permanent:  true,
		}
	case s.inflight >= e.cfg.Capacity:
		// No share ever announced allows this; only a coordinator that
		// ignores Describe's capacity gets here.
		refusal = &executorv1.StepFailure{
			Message:    fmt.Sprintf("executor %s is at capacity: this stream already has %d steps in flight, the whole capacity", e.cfg.ID, s.inflight),
			ErrorClass: ClassOverCapacity,
		}
	case !req.Deadline.IsZero() && !time.Now().Before(req.Deadline):
		refusal = &executorv1.StepFailure{
			Message:    fmt.Sprintf("deadline %s passed before the step started", req.Deadline.Format(time.RFC3339Nano)),
			ErrorClass: ClassDeadlineExceeded,
		}
	}
	if refusal != nil {
		e.mu.Unlock()
		logStep(e.log, req, slog.LevelWarn, "refusing step", "error_class", refusal.GetErrorClass(), "err", refusal.GetMessage())
		e.deliver(s, e.newDelivery(e.failureResult(req, refusal)))
		return
	}

	ctx, cancel := context.WithCancelCause(e.baseCtx)
	stopDeadline := context.CancelFunc(func() {})
	if !req.Deadline.IsZero() {
		ctx, stopDeadline = context.WithDeadline(ctx, req.Deadline)
	}
	r := &run{key: key, req: req, handler: h, sess: s, ctx: ctx, cancel: cancel, stopDeadline: stopDeadline, log: e.log}
	req.progress = func(p *executorv1.StepProgress) { e.sendProgress(s, p) }
	if len(e.admitted) == 0 {
		e.runsIdle = make(chan struct{})
	}
	e.admitted[key] = r
	s.inflight++
	e.queue = append(e.queue, r)
	queued := !e.startQueuedLocked()
	if queued && e.hooks.stepQueued != nil {
		e.hooks.stepQueued()
	}
	e.reannounceLocked()
	e.mu.Unlock()
	if queued {
		logStep(e.log, req, slog.LevelDebug, "step waits for a free slot", "capacity", e.cfg.Capacity)
	}
}

// startQueuedLocked starts waiting steps, oldest first, while slots are
// free, and reports whether the queue was emptied. The caller holds e.mu.
func (e *Executor) startQueuedLocked() bool {
	for len(e.queue) > 0 && e.active < e.cfg.Capacity && !e.shuttingDown {
		r := e.queue[0]
		e.queue[0] = nil
		e.queue = e.queue[1:]
		r.started = true
		e.active++
		if e.hooks.runStarted != nil {
			e.hooks.runStarted(e.active)
		}
		r.logAt(slog.LevelDebug, "step started")
		e.spawn(r)
	}
	return len(e.queue) == 0
}

func (e *Executor) sortedHandlersLocked() []string {
	names := make([]string, 0, len(e.handlers))
	for name := range e.handlers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// cancelStep cancels an admitted attempt. A running handler's result is
// still sent; a step still waiting for a slot is answered at once without
// running.
func (e *Executor) cancelStep(c *executorv1.CancelStep) {
	key := runKey{stepID: c.GetStepId(), attempt: c.GetAttempt()}
	e.mu.Lock()
	r := e.admitted[key]
	waiting := r != nil && !r.started && slices.Contains(e.queue, r)
	if waiting {
		e.queue = slices.DeleteFunc(e.queue, func(q *run) bool { return q == r })
	}
	e.mu.Unlock()
	if r == nil {
		e.log.Debug("cancel for a step not running here", "task_id", c.GetTaskId(),
			"step_id", c.GetStepId(), "attempt", c.GetAttempt(), "reason", c.GetReason())
		return
	}
	r.logAt(slog.LevelInfo, "cancelling step", "reason", c.GetReason(), "waiting_for_slot", waiting)
	r.cancel(&cancelError{reason: c.GetReason()})
	if waiting {
		e.spawn(r)
	}
}

// spawn runs r's handler on a goroutine of its own: one that finished a
// run and waits for the next if there is one, else a new one. A new
// goroutine's stack grows, by copying, to what the handler and the tracing
// around it need, and copying stacks was a tenth of an executor's CPU
// under load when every run had a new goroutine; a goroutine that waits
// keeps its grown stack (until the collector finds it idle and shrinks it).
// Goroutines wait while runs keep coming, so there are at most as many as
// runs were ever at once, and all that wait end when the executor stops.
func (e *Executor) spawn(r *run) {
	select {
	case e.work <- r:
	default:
		go e.worker(r)
	}
}

// worker executes r and then each run handed to it, until the executor
// stops. A handler that calls runtime.Goexit ends its worker, after its
// run was answered (see execute).
func (e *Executor) worker(r *run) {
	for {
		e.execute(r)
		if e.hooks.workerWaiting != nil {
			e.hooks.workerWaiting()
		}
		select {
		case r = <-e.work:
		case <-e.closing:
			return
		}
	}
}

// execute runs the handler and hands its result over. The deferred function
// also covers panics and runtime.Goexit, so every admitted step gets exactly
// one result and frees its slot. A step whose ctx ended before its handler
// could start (cancelled or expired while it waited for a slot, or taken
// back at shutdown) is answered without running.
func (e *Executor) execute(r *run) {
	if r.ctx.Err() != nil {
		e.complete(r, e.unstartedResult(r), 0)
		return
	}
	start := time.Now()
	var (
		out      any
		err      error
		returned bool
	)
	defer func() {
		if p := recover(); p != nil {
			r.logAt(slog.LevelError, "handler panicked", "panic", p, "stack", string(debug.Stack()))
			out, err = nil, WithClass(fmt.Errorf("handler %q panicked: %v", r.req.Handler, p), ClassPanic)
		} else if !returned {
			out, err = nil, WithClass(fmt.Errorf("handler %q exited without returning (runtime.Goexit)", r.req.Handler), ClassPanic)
		}
		e.complete(r, e.resultOf(r, out, err), time.Since(start))
	}()
	// The handler runs in a span that continues the coordinator's span for
	// this attempt, so the handler's own spans join the task's trace.
	ctx := r.ctx
	if len(r.req.traceContext) > 0 {
		ctx = e.propagator.Extract(ctx, propagation.MapCarrier(r.req.traceContext))
	}
	if e.tracingOff {
		out, err = r.handler(ctx, r.req)
		returned = true
		return
	}
	ctx, span := e.tracer.Start(ctx, "handler "+r.req.Handler, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("tasker.task.id", r.req.TaskID),
		attribute.String("tasker.step.name", r.req.StepName),
		attribute.Int("tasker.step.attempt", r.req.Attempt),
		attribute.String("tasker.executor.id", e.cfg.ID),
	))
	defer func() {
		if err != nil {
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
	}()
	out, err = r.handler(ctx, r.req)
	returned = true
}

// unstartedResult answers a step whose handler never ran because its ctx
// ended first. All are retryable: the step itself never failed.
func (e *Executor) unstartedResult(r *run) *executorv1.StepResult {
	var ce *cancelError
	switch {
	case errors.As(context.Cause(r.ctx), &ce) && ce.shutdown:
		return e.failureResult(r.req, &executorv1.StepFailure{
			Message: "executor is shutting down; the step never started", ErrorClass: ClassShuttingDown,
		})
	case ce != nil:
		return e.failureResult(r.req, &executorv1.StepFailure{
			Message: ce.Error() + " (before the step started)", ErrorClass: ClassCancelled,
		})
	default:
		return e.failureResult(r.req, &executorv1.StepFailure{
			Message:    fmt.Sprintf("deadline %s passed while the step waited for a free slot", r.req.Deadline.Format(time.RFC3339Nano)),
			ErrorClass: ClassDeadlineExceeded,
		})
	}
}

// complete frees the step's slot, gives it to the oldest waiting step and
// hands the result over, all in one critical section so the shares
// announced next already count both. The slot is freed before the result
// goes out, so a coordinator that dispatches the next step as soon as it
// reads this result never finds the executor full.
func (e *Executor) complete(r *run, res *executorv1.StepResult, took time.Duration) {
	r.stopDeadline()
	r.cancel(nil)
	d := e.newDelivery(res)

	e.mu.Lock()
	delete(e.admitted, r.key)
	if r.started {
		e.active--
	}
	e.startQueuedLocked()
	r.sess.inflight--
	pending := e.deliverLocked(r.sess, d)
	if len(e.admitted) == 0 {
		close(e.runsIdle)
	}
	e.reannounceLocked()
	e.mu.Unlock()
	if pending {
		e.awaitRedelivery(d)
	}

	if f := res.GetFailure(); f != nil {
		outcome := "retryable"
		if f.GetPermanent() {
			outcome = "permanent"
		}
		e.metrics.observe(r.req.Handler, outcome, took)
		r.logAt(slog.LevelWarn, "step failed", "took", took, "error_class", f.GetErrorClass(),
			"permanent", f.GetPermanent(), "backoff", f.GetBackoff().AsDuration(), "err", f.GetMessage(), "started", r.started)
	} else {
		e.metrics.observe(r.req.Handler, "success", took)
		// Debug, not Info: one line per step would cost more than a noop
		// handler at full speed.
		r.logAt(slog.LevelDebug, "step succeeded", "took", took)
	}
}

// resultOf turns what the handler returned into the wire result.
func (e *Executor) resultOf(r *run, out any, err error) *executorv1.StepResult {
	if err == nil {
		b, encErr := encodeResults(out)
		if encErr != nil {
			encErr = WithClass(encErr, ClassInvalidResult)
		} else if len(b) > e.cfg.MaxResultBytes {
			encErr = WithClass(fmt.Errorf("results are %d bytes, over the executor's limit of %d (MaxResultBytes)", len(b), e.cfg.MaxResultBytes), ClassResultTooLarge)
		}
		if encErr == nil {
			res := e.baseResult(r.req)
			res.Outcome = &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{Results: b}}
			return res
		}
		err = Permanent(encErr)
	}
	if r.ctx.Err() != nil {
		var ce *cancelError
		if errors.As(context.Cause(r.ctx), &ce) {
			// Whatever the handler made of it, the attempt was abandoned on
			// purpose; retryable so a shutdown hands the step to another
			// executor, while a coordinator cancel settles it anyway.
			return e.failureResult(r.req, &executorv1.StepFailure{
				Message:    fmt.Sprintf("%s (handler returned: %v)", ce.Error(), err),
				ErrorClass: ClassCancelled,
			})
		}
		if errors.Is(r.ctx.Err(), context.DeadlineExceeded) {
			return e.failureResult(r.req, failureOf(err, ClassDeadlineExceeded))
		}
	}
	return e.failureResult(r.req, failureOf(err, ""))
}

func (e *Executor) baseResult(req *Request) *executorv1.StepResult {
	return &executorv1.StepResult{
		TaskId:     req.TaskID,
		StepId:     req.StepID,
		Attempt:    int32(req.Attempt),
		ExecutorId: e.cfg.ID,
	}
}

func (e *Executor) failureResult(req *Request, f *executorv1.StepFailure) *executorv1.StepResult {
	res := e.baseResult(req)
	res.Outcome = &executorv1.StepResult_Failure{Failure: f}
	return res
}
