package coordinator

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

// Debounced tasks (trailing debounce). Creates of one template with one
// debounce key make one task while it waits to start; each create replaces
// its context and moves its start to the create's time plus its delay. The
// store holds at most one open task per template and key (a partial unique
// index), which is what makes concurrent creates, on any coordinator, agree
// on one task. Folding a create into that task changes a task some
// coordinator owns and holds in memory with a wake timer, so it is done by
// the owner, under the task's lock, as cancel is (withTask; another
// coordinator forwards the whole create to the owner): the store update is
// conditional on the task not having started, and memory changes only once
// it committed, so the fold and the start never both win. A create that
// finds the task started (its start time passed, or it is no longer
// pending) closes it and makes a new one, in one store transaction.

const (
	// maxDebounceDelay bounds debounce.delay: a debounce holds a task (and
	// every create's context) back at most this long after the last create.
	maxDebounceDelay = 24 * time.Hour
	// maxDebounceKeyBytes bounds debounce.key, which is indexed.
	maxDebounceKeyBytes = 256
	// debounceTries is how often a create retries when the task it found
	// started (or was closed) before the create could fold into it; each
	// retry makes a new task or finds a newer one, so more than one is
	// needed only when tasks with the key keep starting under it.
	debounceTries = 3
)

// debounceParams is a validated CreateTaskRequest.debounce.
type debounceParams struct {
	key   string
	delay time.Duration
}

// errDebounceStarted means the open debounced task a create found has
// started (or was closed by another create that judged it so): the create
// makes a new one instead.
var errDebounceStarted = errors.New("the debounced task started")

// debounceOf reads a create's debounce, refusing the combinations that do
// not make sense with it.
func debounceOf(req *coordinatorv1.CreateTaskRequest) (*debounceParams, error) {
	d := req.GetDebounce()
	if d == nil {
		return nil, nil
	}
	switch {
	case req.GetRunAt() != nil:
		return nil, status.Error(codes.InvalidArgument, "debounce and run_at: a debounced task starts debounce.delay after the last create; give one or the other")
	case req.GetDelay() != nil:
		return nil, status.Error(codes.InvalidArgument, "debounce and delay: a debounced task waits debounce.delay after the last create; give that one only")
	case req.GetIdempotencyKey() != "":
		return nil, status.Error(codes.InvalidArgument, "debounce and idempotency_key: repeated creates with one debounce.key already fold into one task; give one or the other")
	case d.GetKey() == "":
		return nil, status.Error(codes.InvalidArgument, "debounce.key is required")
	case len(d.GetKey()) > maxDebounceKeyBytes:
		return nil, status.Errorf(codes.InvalidArgument, "debounce.key is %d bytes, over the limit of %d", len(d.GetKey()), maxDebounceKeyBytes)
	case d.GetDelay() == nil:
		return nil, status.Error(codes.InvalidArgument, "debounce.delay is required")
	}
	if err := d.GetDelay().CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "debounce.delay: %v", err)
	}
	delay := d.GetDelay().AsDuration()
	switch {
	case delay <= 0:
		return nil, status.Errorf(codes.InvalidArgument, "debounce.delay: %s must be more than zero", delay)
	case delay > maxDebounceDelay:
		return nil, status.Errorf(codes.InvalidArgument, "debounce.delay: %s is over the maximum of %s", delay, maxDebounceDelay)
	}
	return &debounceParams{key: d.GetKey(), delay: delay}, nil
}

// createDebounced makes a debounced create: a new task, or the open one
// with its context and start time replaced. An error that is a
// *store.OwnedError names the coordinator that owns the open task, for the
// caller to forward the create to.
func (e *engine) createDebounced(ctx context.Context, p *createParams) (*taskView, bool, error) {
	for range debounceTries {
		v, created, err := e.createOnce(ctx, p)
		// A conflict is the store's word that the open task it found was
		// closed before it could be read: nothing was written.
		if !errors.Is(err, errDebounceStarted) && !errors.Is(err, store.ErrConflict) {
			return v, created, err
		}
	}
	return nil, false, &codedError{codes.Aborted, errors.New("debounced tasks with this key kept starting while the create was applied; retry")}
}

// debounceInto folds a create into the open debounced task it found, on
// the coordinator that owns the task (withTask takes it if its owner is
// gone, and names the owner otherwise). It returns errDebounceStarted if
// the task started first.
func (e *engine) debounceInto(ctx context.Context, found *store.Task, p *createParams) (*taskView, bool, error) {
	snap, err := e.withTask(ctx, found.ID, func(tr *taskRun) error {
		now := e.now()
		if tr.task.DebounceKey != p.debounce.key || !tr.waitsToStart(now) {
			return errDebounceStarted
		}
		// The task keeps the template version it was created with; the
		// context it will run with must meet that version's schema.
		if err := tr.tmpl.schema.Validate(p.context); err != nil {
			return err
		}
		// Flow control keys come from the context, so they follow it. A
		// task that has not started holds no admission, so nothing held
		// under the old keys needs giving back.
		flow, err := flowOf(tr.tmpl, p.context)
		if err != nil {
			return err
		}
		runAt := now.Add(p.debounce.delay)
		err = e.store.TaskDebounce(ctx, &store.TaskDebounceParams{
			TaskID: tr.task.ID, Lease: e.lease.Load(), Context: p.context, RunAt: runAt, ExpectRunAt: tr.task.RunAt, At: now,
		})
		switch {
		case errors.Is(err, store.ErrConflict):
			// Another create judged it started and closed it.
			return errDebounceStarted
		case errors.Is(err, store.ErrLeaseLost):
			e.metrics.fencedWrites.Inc()
			e.retire(tr)
			return err
		case err != nil:
			// It may have committed: memory is rebuilt from the store
			// (repair takes the flow control of the context it finds).
			e.breakTask(tr)
			return err
		}
		tr.task.Context, tr.task.RunAt, tr.flow = p.context, runAt, flow
		e.armWake(tr, now)
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	v, err := e.view(ctx, snap)
	return v, false, err
}
