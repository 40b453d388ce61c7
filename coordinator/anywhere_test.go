package coordinator_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

// peerHarness serves a coordinator on a store other coordinators share,
// advertising its address in its lease as the CLI does.
func peerHarness(t *testing.T, st store.Store, id string) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return serveCoordinator(t, coordinator.Config{Store: st, ID: id, Address: lis.Addr().String()}, lis)
}

// takeoverPeer is a peerHarness whose lease lapses 300 ms after it stops,
// for tests in which another coordinator takes its tasks over.
func takeoverPeer(t *testing.T, st store.Store, id string) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return serveCoordinator(t, coordinator.Config{Store: st, ID: id, Address: lis.Addr().String(), LeaseTTL: 300 * time.Millisecond}, lis)
}

// Two coordinators share one database; executors serve a; every operator
// action on a's tasks is sent to b, as a load balancer in front of both
// would send most of them. b forwards each to a, which owns the task, and
// answers with what a did.
func TestOperatorActionsWorkOnEveryCoordinator(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	a := peerHarness(t, st, "coord-a")
	b := peerHarness(t, st, "coord-b")
	g := newGate()
	var open atomic.Bool
	cancelled := make(chan error, 1)
	runExecutor(a, executor.Config{Capacity: 8}, listen(t), map[string]executor.HandlerFunc{
		"gated": g.handler(),
		"block": blockUntilCancelled(cancelled),
		"gate": func(context.Context, *executor.Request) (any, error) {
			if !open.Load() {
				return nil, executor.Permanent(errors.New("gate closed"))
			}
			return map[string]bool{"passed": true}, nil
		},
	})
	a.apply(`
namespace: test
name: anywhere
version: 1.0.0
steps:
  - name: first
    handler: gate
  - name: hold
    handler: gated
    depends_on: [first]
`)
	a.apply(`
namespace: test
name: cancel_anywhere
version: 1.0.0
steps:
  - name: long
    handler: block
`)

	// Cancel a running task through b: the handler on a's executor is told.
	running := a.create("test", "cancel_anywhere", map[string]any{})
	require.Eventually(t, func() bool {
		return step(a.get(running.GetId()), "long").GetState() == coordinatorv1.State_STATE_IN_PROGRESS
	}, 10*time.Second, time.Millisecond)
	cresp, err := b.client.CancelTask(b.ctx, &coordinatorv1.CancelTaskRequest{Id: running.GetId(), Reason: "via b"})
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, cresp.GetTask().GetState())
	select {
	case err := <-cancelled:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the running handler was not cancelled")
	}

	// Retry through b a task that failed on a.
	failed := a.create("test", "anywhere", map[string]any{"n": 1})
	a.waitState(failed.GetId(), coordinatorv1.State_STATE_ERROR)
	third := a.create("test", "anywhere", map[string]any{"n": 3})
	a.waitState(third.GetId(), coordinatorv1.State_STATE_ERROR)
	open.Store(true)
	rresp, err := b.client.RetryTask(b.ctx, &coordinatorv1.RetryTaskRequest{Id: failed.GetId()})
	require.NoError(t, err)
	require.NotEqual(t, coordinatorv1.State_STATE_ERROR, rresp.GetTask().GetState())
	g.waitStarted(t)
	// And in bulk: b lists the tasks in error and sends each to a.
	bulk, err := b.client.RetryTasks(b.ctx, &coordinatorv1.RetryTasksRequest{Filter: &coordinatorv1.TaskFilter{Namespace: "test", Name: "anywhere"}})
	require.NoError(t, err)
	require.Len(t, bulk.GetOutcomes(), 1)
	require.Equal(t, third.GetId(), bulk.GetOutcomes()[0].GetId())
	require.True(t, bulk.GetOutcomes()[0].GetDone(), "%v", bulk.GetOutcomes()[0])
	g.waitStarted(t)

	// Resolve through b a step of a task running on a.
	open.Store(false)
	other := a.create("test", "anywhere", map[string]any{"n": 2})
	a.waitState(other.GetId(), coordinatorv1.State_STATE_ERROR)
	sresp, err := b.client.ResolveStep(b.ctx, &coordinatorv1.ResolveStepRequest{TaskId: other.GetId(), StepName: "first"})
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, step(sresp.GetTask(), "first").GetState())
	g.waitStarted(t)
	close(g.release)
	a.waitState(failed.GetId(), coordinatorv1.State_STATE_COMPLETE)
	a.waitState(other.GetId(), coordinatorv1.State_STATE_COMPLETE)
	a.waitState(third.GetId(), coordinatorv1.State_STATE_COMPLETE)

	// Refusals come back from the owner as they are.
	_, err = b.client.RetryTask(b.ctx, &coordinatorv1.RetryTaskRequest{Id: other.GetId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
}

// A step result reported (not streamed) to a coordinator that does not own
// the task is forwarded to the one that does, and applied once.
func TestReportedResultReachesTheOwner(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	a := peerHarness(t, st, "coord-a")
	b := peerHarness(t, st, "coord-b")
	f := startFakeExecutor(t, "exec-r", 1, "work")
	f.register(a)
	a.apply(oneStepTemplate)
	task := a.create("test", "one_step", map[string]any{})
	st1 := f.next()
	res := succeed(st1, "exec-r").GetStepResult()
	resp, err := b.client.ReportStepResult(b.ctx, &coordinatorv1.ReportStepResultRequest{Result: res})
	require.NoError(t, err)
	require.True(t, resp.GetApplied())
	a.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	again, err := b.client.ReportStepResult(b.ctx, &coordinatorv1.ReportStepResultRequest{Result: res})
	require.NoError(t, err)
	require.False(t, again.GetApplied(), "a duplicate is acknowledged and ignored")
}

// A result streamed to a coordinator that does not own the task (an
// executor answers on the stream of whoever dispatched the attempt, and
// the task has since moved) is forwarded to the owner and applied there
// once, so the attempt does not run again.
func TestStreamedResultReachesTheOwner(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	a := peerHarness(t, st, "coord-a")
	b := peerHarness(t, st, "coord-b")
	f := startFakeExecutor(t, "exec-s", 1, "work")
	f.register(a)
	a.apply(oneStepTemplate)
	task := a.create("test", "one_step", map[string]any{})
	first := f.next()

	// The executor also serves b; its result goes out on b's stream.
	f.register(b)
	f.send(succeed(first, "exec-s"))
	done := a.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 1, step(done, "work").GetAttempts(), "the attempt ran once")
	got, err := b.client.GetTask(b.ctx, &coordinatorv1.GetTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, got.GetTask().GetState())
}

// stalledRenewals holds every LeaseRenew until release is closed, as a
// coordinator paused by the OS (or cut off from the database only for its
// lease's row) would: its lease lapses while it still holds its tasks.
type stalledRenewals struct {
	store.Store
	stalled atomic.Bool
	release chan struct{}
}

func (s *stalledRenewals) LeaseRenew(ctx context.Context, p *store.LeaseRenewParams) (*store.Lease, error) {
	if s.stalled.Load() {
		<-s.release
	}
	return s.Store.LeaseRenew(ctx, p)
}

// A coordinator whose lease lapsed while it was not looking still holds a
// task another coordinator has taken over; the result of the attempt it
// dispatched arrives on its stream, and its write is refused. It passes
// the result on to the new owner (once it has started over with a new
// lease, if need be), which applies it: the attempt runs once.
func TestResultRefusedForALapsedLeaseReachesTheNewOwner(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	stall := &stalledRenewals{Store: st, release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(stall.release) }) }
	serve := func(id string, s store.Store, reg *prometheus.Registry) *harness {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		return serveCoordinator(t, coordinator.Config{Store: s, ID: id, Address: lis.Addr().String(), LeaseTTL: 300 * time.Millisecond, Registerer: reg}, lis)
	}
	oldReg := prometheus.NewRegistry()
	old := serve("coord-old", stall, oldReg)
	t.Cleanup(release) // before old stops (cleanups run last first), which renews once more
	f := startFakeExecutor(t, "exec-l", 1, "work")
	f.register(old)
	old.apply(oneStepTemplate)
	task := old.create("test", "one_step", map[string]any{})
	first := f.next()
	stored, err := st.TaskGet(t.Context(), task.GetId())
	require.NoError(t, err)
	oldToken := stored.OwnerToken

	stall.stalled.Store(true)
	next := serve("coord-new", st, prometheus.NewRegistry())
	require.Eventually(t, func() bool {
		got, err := st.TaskGet(t.Context(), task.GetId())
		return err == nil && got.OwnerToken != oldToken
	}, 10*time.Second, 5*time.Millisecond, "the new coordinator took the task over from the lapsed lease")

	f.send(succeed(first, "exec-l"))
	require.Eventually(t, func() bool { return metricValue(t, oldReg, "tasker_fenced_writes_total") >= 1 },
		10*time.Second, time.Millisecond, "the old coordinator's write of the result was refused")
	release()
	done := next.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 1, step(done, "work").GetAttempts(), "the attempt ran once")
}

// After a restart the coordinator holds a new lease, and finished tasks
// still name the old one: operator actions on them take them over instead
// of failing with "lease lost".
func TestOperatorActionsAfterRestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	var open atomic.Bool
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), map[string]executor.HandlerFunc{
		"gate": func(context.Context, *executor.Request) (any, error) {
			if !open.Load() {
				return nil, executor.Permanent(errors.New("gate closed"))
			}
			return map[string]bool{"passed": true}, nil
		},
	})
	h.apply(`
namespace: test
name: restart_actions
version: 1.0.0
steps:
  - name: first
    handler: gate
  - name: after
    handler: noop
    depends_on: [first]
`)
	toRetry := h.create("test", "restart_actions", map[string]any{"n": 1})
	toResolve := h.create("test", "restart_actions", map[string]any{"n": 2})
	h.waitState(toRetry.GetId(), coordinatorv1.State_STATE_ERROR)
	h.waitState(toResolve.GetId(), coordinatorv1.State_STATE_ERROR)
	open.Store(true)
	done := h.create("test", "restart_actions", map[string]any{"n": 3})
	h.waitState(done.GetId(), coordinatorv1.State_STATE_COMPLETE)

	n.crash()
	n.start()
	h.waitExecutor("exec-1", true)
	_, err := h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: toRetry.GetId()})
	require.NoError(t, err)
	_, err = h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: toResolve.GetId(), StepName: "first"})
	require.NoError(t, err)
	resp, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: done.GetId()})
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, resp.GetTask().GetState())
	retried := h.waitState(toRetry.GetId(), coordinatorv1.State_STATE_COMPLETE)
	h.waitState(toResolve.GetId(), coordinatorv1.State_STATE_COMPLETE)
	// History says which lease wrote what: the first run's, then the
	// restarted coordinator's, never going back.
	var tokens []int64
	for _, tr := range retried.GetTransitions() {
		tokens = append(tokens, tr.GetLeaseToken())
	}
	require.Positive(t, tokens[0])
	require.Greater(t, tokens[len(tokens)-1], tokens[0], "%v", tokens)
	require.True(t, slices.IsSorted(tokens), "%v", tokens)
}

// countingStore records the AfterSeq of every TransitionList call.
type countingStore struct {
	store.Store
	mu     sync.Mutex // protects afters
	afters []int64
}

func (s *countingStore) TransitionList(ctx context.Context, p *store.TransitionListParams) ([]*store.Transition, error) {
	s.mu.Lock()
	s.afters = append(s.afters, p.AfterSeq)
	s.mu.Unlock()
	return s.Store.TransitionList(ctx, p)
}

func (s *countingStore) calls() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.afters)
}

// A watch of a task another coordinator runs polls the store, reading only
// what is newer than the last transition it sent; it used to re-read the
// task's whole history every 250 ms.
func TestWatchOfATaskRunElsewhereReadsOnlyWhatIsNew(t *testing.T) {
	t.Parallel()
	st := &countingStore{Store: openSQLite(t)}
	a := peerHarness(t, st, "coord-a")
	b := peerHarness(t, st, "coord-b")
	f := startFakeExecutor(t, "exec-w", 1, "work")
	f.register(a)
	a.apply(oneStepTemplate)
	task := a.create("test", "one_step", map[string]any{})
	running := f.next()

	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	stream, err := b.client.WatchTask(ctx, &coordinatorv1.WatchTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	var last int64
	for range 2 { // the step and the task moved to in_progress
		msg, err := stream.Recv()
		require.NoError(t, err)
		last = msg.GetTransition().GetSeq()
	}
	before := len(st.calls())
	require.Eventually(t, func() bool { return len(st.calls()) >= before+3 }, 10*time.Second, time.Millisecond,
		"b polls the store for the task a runs")
	for _, after := range st.calls()[before:] {
		require.Equal(t, last, after, "a poll reads after the last transition sent")
	}
	f.send(succeed(running, "exec-w"))
	for {
		msg, err := stream.Recv()
		require.NoError(t, err)
		if msg.GetTaskState() == coordinatorv1.State_STATE_COMPLETE {
			break
		}
	}
}
