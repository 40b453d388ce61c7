package executor

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// Timings of the background loops. The retry backoff trades how soon a
// recovered coordinator gets its results against how hard a down one is
// hammered.
const (
	reportTimeout   = 5 * time.Second
	registerTimeout = 10 * time.Second
	retryMin        = 100 * time.Millisecond
	retryMax        = 5 * time.Second
)

// delivery tracks one result until some path delivers it.
type delivery struct {
	res *executorv1.StepResult
	// Guarded by Executor.mu.
	done bool
	// unaryRejected is set when the coordinator refused the result on
	// ReportStepResult for good; only a stream can carry it then.
	unaryRejected bool
	// uncounted marks a speculative resend that shutdown does not wait for.
	uncounted bool
}

// newDelivery counts res as undelivered until markDelivered.
func (e *Executor) newDelivery(res *executorv1.StepResult) *delivery {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.undelivered == 0 {
		e.drained = make(chan struct{})
	}
	e.undelivered++
	return &delivery{res: res}
}

// newResend tracks a result that was sent on a stream that then broke, so
// it probably arrived. Shutdown waits for it only when ReportStepResult can
// settle it quickly; waiting for a new stream to appear would stall every
// shutdown that follows a coordinator hanging up.
func (e *Executor) newResend(res *executorv1.StepResult) *delivery {
	if len(e.cfg.coordinators()) > 0 {
		return e.newDelivery(res)
	}
	return &delivery{res: res, uncounted: true}
}

// markDelivered is idempotent: a result may travel on a stream and through
// ReportStepResult at once.
func (e *Executor) markDelivered(d *delivery) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d.done {
		return
	}
	d.done = true
	if d.uncounted {
		return
	}
	e.undelivered--
	if e.undelivered == 0 {
		close(e.drained)
	}
}

// deliver queues d on s, or makes it pending when s is gone.
func (e *Executor) deliver(s *session, d *delivery) {
	e.mu.Lock()
	pending := e.deliverLocked(s, d)
	e.mu.Unlock()
	if pending {
		e.awaitRedelivery(d)
	}
}

// deliverLocked queues d on the stream the step came from and reports
// false, or makes it pending and reports true when that stream is gone;
// the caller then calls awaitRedelivery without e.mu. The caller holds
// e.mu.
func (e *Executor) deliverLocked(s *session, d *delivery) (pending bool) {
	if !s.closed {
		s.queue = append(s.queue, outbound{msg: resultMessage(d.res), d: d})
		nudge(s.wake)
		return false
	}
	e.pending = append(e.pending, d)
	return true
}

// awaitRedelivery logs a result that became pending and wakes the loop
// that delivers those.
func (e *Executor) awaitRedelivery(d *delivery) {
	e.log.Info("step result waits for redelivery", "task_id", d.res.GetTaskId(),
		"step_id", d.res.GetStepId(), "attempt", d.res.GetAttempt())
	nudge(e.redeliverWake)
}

// redeliverLoop delivers pending results: first choice the coordinator's
// ReportStepResult, retried with backoff; else any open stream. A stream that
// opens later also takes every pending result (see openSession).
func (e *Executor) redeliverLoop(ctx context.Context, coord []coordinatorv1.CoordinatorServiceClient) {
	delay := retryMin
	timer := time.NewTimer(delay)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.redeliverWake:
		case <-timer.C:
		}
		if e.redeliverPending(ctx, coord) {
			timer.Reset(delay)
			delay = min(2*delay, retryMax)
		} else {
			delay = retryMin
		}
	}
}

// redeliverPending makes one pass over the pending results and reports
// whether a later ReportStepResult retry may deliver what is left.
func (e *Executor) redeliverPending(ctx context.Context, coord []coordinatorv1.CoordinatorServiceClient) (retry bool) {
	e.mu.Lock()
	e.pending = slices.DeleteFunc(e.pending, func(d *delivery) bool { return d.done })
	batch := slices.Clone(e.pending)
	e.mu.Unlock()

	unaryUp := len(coord) > 0
	for _, d := range batch {
		e.mu.Lock()
		done, rejected := d.done, d.unaryRejected
		e.mu.Unlock()
		if done {
			continue
		}
		if unaryUp && !rejected {
			err := e.report(ctx, coord, d)
			switch {
			case err == nil:
				e.markDelivered(d)
				continue
			case ctx.Err() != nil:
				return false
			case definitiveRejection(err):
				e.mu.Lock()
				d.unaryRejected = true
				e.mu.Unlock()
				e.log.Error("coordinator rejected reported result; waiting for a stream to carry it",
					"task_id", d.res.GetTaskId(), "step_id", d.res.GetStepId(), "attempt", d.res.GetAttempt(), "err", err)
			default:
				// Probably down: stop calling it this pass, retry later.
				e.log.Warn("report step result failed, will retry",
					"task_id", d.res.GetTaskId(), "step_id", d.res.GetStepId(), "attempt", d.res.GetAttempt(), "err", err)
				unaryUp = false
				retry = true
			}
		} else if len(coord) > 0 && !rejected {
			retry = true
		}
		e.handOver(d)
	}
	return retry
}

// report sends one result through ReportStepResult. With several
// coordinators only the task's owner applies it, so each is tried until one
// does; if every one answers without applying it, the result was stale and
// counts as delivered.
func (e *Executor) report(ctx context.Context, coords []coordinatorv1.CoordinatorServiceClient, d *delivery) error {
	var errs []error
	for _, coord := range coords {
		rctx, cancel := context.WithTimeout(ctx, reportTimeout)
		resp, err := coord.ReportStepResult(rctx, &coordinatorv1.ReportStepResultRequest{Result: d.res})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if resp.GetApplied() || len(coords) == 1 {
			e.log.Info("step result reported", "task_id", d.res.GetTaskId(), "step_id", d.res.GetStepId(),
				"attempt", d.res.GetAttempt(), "applied", resp.GetApplied())
			return nil
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	e.log.Info("step result reported; no coordinator needed it", "task_id", d.res.GetTaskId(), "step_id", d.res.GetStepId(),
		"attempt", d.res.GetAttempt())
	return nil
}

// definitiveRejection reports whether retrying ReportStepResult with the
// same result cannot succeed.
func definitiveRejection(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.Unauthenticated:
		return true
	}
	return false
}

// handOver moves a pending result onto the newest open stream, if any.
func (e *Executor) handOver(d *delivery) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d.done {
		return true
	}
	var newest *session
	for s := range e.sessions {
		if newest == nil || s.id > newest.id {
			newest = s
		}
	}
	if newest == nil {
		return false
	}
	e.pending = slices.DeleteFunc(e.pending, func(p *delivery) bool { return p == d })
	newest.queue = append(newest.queue, outbound{msg: resultMessage(d.res), d: d})
	nudge(newest.wake)
	return true
}

// hasSession reports whether an Execute stream from the coordinator named
// id is open. A coordinator that does not name itself has id "".
func (e *Executor) hasSession(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.sessions {
		if s.coordinatorID == id {
			return true
		}
	}
	return false
}

// registerLoop registers with the coordinator whenever no Execute stream is
// open: at start, every RegisterInterval, and as soon as a stream closes.
func (e *Executor) registerLoop(ctx context.Context, coord coordinatorv1.CoordinatorServiceClient, target, addr string) {
	ticker := time.NewTicker(e.cfg.RegisterInterval)
	defer ticker.Stop()
	registered := false
	failing := false
	coordinatorID := ""
	for {
		if !e.hasSession(coordinatorID) {
			rctx, cancel := context.WithTimeout(ctx, registerTimeout)
			resp, err := coord.RegisterExecutor(rctx, &coordinatorv1.RegisterExecutorRequest{Address: addr})
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				// Warn once per outage; a down coordinator is retried every
				// interval and would flood the log otherwise.
				level := slog.LevelWarn
				if failing {
					level = slog.LevelDebug
				}
				e.log.Log(ctx, level, "register with coordinator failed", "coordinator", target, "err", err)
				failing, registered = true, false
			default:
				coordinatorID = resp.GetCoordinatorId()
				if !registered {
					e.log.Info("registered with coordinator", "coordinator", target,
						"coordinator_id", resp.GetCoordinatorId(), "address", addr)
				}
				failing, registered = false, true
			}
		} else {
			registered = false
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-e.registerWake:
		}
	}
}
