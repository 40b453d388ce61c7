package coordinator_test

import (
	"context"
	"database/sql"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	"github.com/tasker-go/tasker/executor/builtin"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// runExecutor starts an executor for h with cfg (Coordinator and Logger are
// filled in) and waits until the coordinator sees it connected.
func runExecutor(h *harness, cfg executor.Config, lis net.Listener, extra map[string]executor.HandlerFunc) (ex *executor.Executor, stop func()) {
	t := h.t
	t.Helper()
	cfg.Coordinator, cfg.Logger = h.addr, h.log
	if cfg.RegisterInterval == 0 {
		cfg.RegisterInterval = 50 * time.Millisecond
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = time.Second
	}
	ex, err := executor.New(cfg)
	require.NoError(t, err)
	require.NoError(t, builtin.Register(ex))
	for name, fn := range extra {
		require.NoError(t, ex.Handle(name, fn))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ex.Serve(ctx, lis)
	}()
	var once atomic.Bool
	stop = func() {
		if once.CompareAndSwap(false, true) {
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	h.waitExecutor(ex.ID(), true)
	return ex, stop
}

// waitExecutor waits until the coordinator reports the executor connected
// (or not).
func (h *harness) waitExecutor(id string, connected bool) {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		resp, err := h.client.ListExecutors(h.ctx, &coordinatorv1.ListExecutorsRequest{})
		if err != nil {
			return false
		}
		for _, e := range resp.GetExecutors() {
			if e.GetId() == id {
				return e.GetConnected() == connected
			}
		}
		return !connected
	}, 15*time.Second, 10*time.Millisecond, "executor %s connected=%v", id, connected)
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return lis
}

// blockUntilCancelled is a handler that runs until its context ends, and
// reports that on cancelled.
func blockUntilCancelled(cancelled chan<- error) executor.HandlerFunc {
	return func(ctx context.Context, _ *executor.Request) (any, error) {
		<-ctx.Done()
		select {
		case cancelled <- ctx.Err():
		default:
		}
		return nil, ctx.Err()
	}
}

func TestLostExecutorsAttemptRetriesElsewhere(t *testing.T) {
	t.Parallel()
	h, _ := nodeHarness(t, coordinator.Config{ExecutorGrace: 300 * time.Millisecond, ExecutorLiveness: time.Second}, 0)
	// Executor A is reached through a proxy the test can cut; it hangs on
	// "work" until cancelled. Executor B finishes "work" at once.
	aLis := listen(t)
	px := startProxy(t, aLis.Addr().String())
	aDone := make(chan error, 1)
	a, _ := runExecutor(h, executor.Config{ID: "exec-a", Capacity: 4, AdvertiseAddress: px.addr()}, aLis,
		map[string]executor.HandlerFunc{"work": blockUntilCancelled(aDone)})
	h.apply(`
namespace: test
name: lost
version: 1.0.0
steps:
  - name: work
    handler: work
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
`)
	task := h.create("test", "lost", map[string]any{})
	require.Eventually(t, func() bool {
		return step(h.get(task.GetId()), "work").GetState() == coordinatorv1.State_STATE_IN_PROGRESS
	}, 10*time.Second, 10*time.Millisecond)
	bDone := int32(0)
	b, stopB := runExecutor(h, executor.Config{ID: "exec-b", Capacity: 4}, listen(t), map[string]executor.HandlerFunc{
		"work": func(context.Context, *executor.Request) (any, error) {
			atomic.AddInt32(&bDone, 1)
			return map[string]string{"by": "b"}, nil
		},
	})

	px.partition(true)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	work := step(done, "work")
	require.EqualValues(t, 2, work.GetAttempts())
	require.EqualValues(t, 1, atomic.LoadInt32(&bDone))
	var lost, retriedOnB bool
	for _, tr := range work.GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_ERROR && strings.Contains(tr.GetReason(), "executor exec-a was lost") {
			lost = true
		}
		if tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS && tr.GetAttempt() == 2 && strings.HasSuffix(tr.GetReason(), b.ID()) {
			retriedOnB = true
		}
	}
	require.True(t, lost, "attempt 1 failed as lost: %v", work.GetTransitions())
	require.True(t, retriedOnB, "attempt 2 ran on the other executor: %v", work.GetTransitions())

	// A comes back and is used again.
	px.partition(false)
	h.waitExecutor(a.ID(), true)
	stopB()
	h.waitExecutor(b.ID(), false)
	h.apply(`
namespace: test
name: after_heal
version: 1.0.0
steps:
  - name: hello
    handler: noop
`)
	again := h.create("test", "after_heal", map[string]any{})
	healed := h.waitState(again.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Contains(t, step(healed, "hello").GetTransitions()[0].GetReason(), a.ID())
}

func TestUnresponsiveExecutorIsDropped(t *testing.T) {
	t.Parallel()
	// An executor that never heartbeats within the liveness timeout counts
	// as gone even though its TCP connection is up.
	h, _ := nodeHarness(t, coordinator.Config{ExecutorGrace: 100 * time.Millisecond, ExecutorLiveness: 300 * time.Millisecond}, 0)
	ex, _ := runExecutor(h, executor.Config{ID: "sleepy", HeartbeatInterval: time.Hour}, listen(t), nil)
	h.waitExecutor(ex.ID(), false)
}

func TestStepTimeoutCancelsAndRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cancelled := make(chan error, 1)
	unstick := make(chan struct{})
	defer close(unstick)
	h.startExecutor(4, map[string]executor.HandlerFunc{
		"slow_once": func(ctx context.Context, req *executor.Request) (any, error) {
			if req.Attempt >= 2 {
				return map[string]int{"attempt": req.Attempt}, nil
			}
			// Attempt 1 sees its context end but is slow to give up, so
			// it is the coordinator's timer that fails the attempt.
			<-ctx.Done()
			cancelled <- ctx.Err()
			<-unstick
			return nil, ctx.Err()
		},
	})
	h.apply(`
namespace: test
name: timeout
version: 1.0.0
steps:
  - name: slow
    handler: slow_once
    timeout: 200ms
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
`)
	task := h.create("test", "timeout", map[string]any{})
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	slow := step(done, "slow")
	require.EqualValues(t, 2, slow.GetAttempts())
	var timedOut bool
	for _, tr := range slow.GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_ERROR && strings.Contains(tr.GetReason(), "timed out after 200ms") {
			timedOut = true
		}
	}
	require.True(t, timedOut, "%v", slow.GetTransitions())
	select {
	case err := <-cancelled:
		require.Error(t, err, "the timed-out handler's context was cancelled")
	case <-time.After(10 * time.Second):
		t.Fatal("the timed-out handler was never cancelled")
	}
}

func TestCoordinatorRestartAcceptsLateResultAndRebuildsTimers(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{ExecutorGrace: 10 * time.Second}, 0)
	release := make(chan struct{})
	var runs atomic.Int32
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), map[string]executor.HandlerFunc{
		"gated": func(ctx context.Context, _ *executor.Request) (any, error) {
			runs.Add(1)
			select {
			case <-release:
				return map[string]bool{"done": true}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	h.apply(`
namespace: test
name: restart
version: 1.0.0
steps:
  - name: long
    handler: gated
  - name: shaky
    handler: flaky
    config: {fail_times: 1, backoff_ms: 1500}
  - name: after
    handler: noop
    depends_on: [long, shaky]
`)
	task := h.create("test", "restart", map[string]any{})
	require.Eventually(t, func() bool {
		got := h.get(task.GetId())
		return step(got, "long").GetState() == coordinatorv1.State_STATE_IN_PROGRESS &&
			step(got, "shaky").GetState() == coordinatorv1.State_STATE_ERROR
	}, 10*time.Second, 5*time.Millisecond)

	n.crash()
	n.start()
	// The executor finds the new coordinator and tells it (by heartbeat)
	// that attempt 1 of "long" is still running: the coordinator adopts it,
	// counting it in flight on that executor, before its result exists.
	require.Eventually(t, func() bool { return n.coord.AttemptExecutor(task.GetId(), "long") == "exec-1" },
		20*time.Second, 5*time.Millisecond, "the restarted coordinator adopted the running attempt")
	// Its result, delivered when released, is accepted; "shaky" waits out
	// its backoff on a rebuilt timer.
	close(release)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	long := step(done, "long")
	require.EqualValues(t, 1, long.GetAttempts(), "the late result of the running attempt was accepted")
	require.EqualValues(t, 1, runs.Load(), "the handler ran once")
	for _, tr := range long.GetTransitions() {
		require.NotContains(t, tr.GetReason(), "presumed lost")
	}
	require.Contains(t, long.GetTransitions()[len(long.GetTransitions())-1].GetReason(), "succeeded")
	shaky := step(done, "shaky")
	require.EqualValues(t, 2, shaky.GetAttempts())
	// The rebuilt timer fired at the stored retry time, not before.
	var failedAt, retriedAt time.Time
	for _, tr := range shaky.GetTransitions() {
		switch {
		case tr.GetToState() == coordinatorv1.State_STATE_ERROR:
			failedAt = tr.GetAt().AsTime()
		case tr.GetFromState() == coordinatorv1.State_STATE_ERROR && tr.GetToState() == coordinatorv1.State_STATE_PENDING:
			retriedAt = tr.GetAt().AsTime()
		}
	}
	require.GreaterOrEqual(t, retriedAt.Sub(failedAt), 1500*time.Millisecond, "retried after the 1.5 s backoff the handler asked for")
	requireParentsFirst(t, done)
}

func TestGracefulStopLetsResultsLand(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	runExecutor(h, executor.Config{Capacity: 4}, listen(t), nil)
	h.apply(`
namespace: test
name: drain
version: 1.0.0
steps:
  - name: running
    handler: sleep
    config: {ms: 300}
  - name: next
    handler: noop
    depends_on: [running]
`)
	task := h.create("test", "drain", map[string]any{})
	require.Eventually(t, func() bool {
		return step(h.get(task.GetId()), "running").GetState() == coordinatorv1.State_STATE_IN_PROGRESS
	}, 10*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, n.coord.Stop(ctx), "the in-flight result landed before the deadline")
	st, err := n.store.StepList(ctx, task.GetId())
	require.NoError(t, err)
	require.Equal(t, "complete", string(st[0].State), "the running step's result was committed")
	require.Equal(t, "pending", string(st[1].State), "nothing new was dispatched while stopping")

	n.crash()
	n.start()
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 1, step(done, "running").GetAttempts())
}

func TestLimits(t *testing.T) {
	t.Parallel()
	h, _ := nodeHarness(t, coordinator.Config{Limits: coordinator.Limits{MaxSteps: 3, MaxResultBytes: 1024, MaxRequestBytes: 64 << 10, MaxContextBytes: 512}}, 0)
	runExecutor(h, executor.Config{}, listen(t), map[string]executor.HandlerFunc{
		"big": func(context.Context, *executor.Request) (any, error) {
			return map[string]string{"blob": strings.Repeat("x", 4096)}, nil
		},
	})
	steps := []*coordinatorv1.StepTemplate{stepT("a", "noop"), stepT("b", "noop"), stepT("c", "noop"), stepT("d", "noop")}
	_, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: &coordinatorv1.TaskTemplate{Namespace: "l", Name: "many", Version: "1.0.0", Steps: steps}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "3")

	h.apply(`
namespace: l
name: big
version: 1.0.0
steps:
  - name: produce
    handler: big
`)
	huge, err := structpb.NewStruct(map[string]any{"blob": strings.Repeat("y", 100<<10)})
	require.NoError(t, err)
	_, err = h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "l", Name: "big", Context: huge})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "request over max_request_bytes: %v", err)
	big, err := structpb.NewStruct(map[string]any{"blob": strings.Repeat("y", 600)})
	require.NoError(t, err)
	_, err = h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "l", Name: "big", Context: big})
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "max_context_bytes")

	task := h.create("l", "big", map[string]any{})
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	produce := step(failed, "produce")
	require.Equal(t, "ResultTooLarge", produce.GetError().GetErrorClass())
	require.Contains(t, produce.GetError().GetMessage(), "max_result_bytes")
	require.False(t, produce.GetError().GetRetryable())
}

func TestStoreBusyIsReportedAndRecovered(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h, n := nodeHarness(t, coordinator.Config{ExecutorGrace: 30 * time.Second, Registerer: reg}, 50*time.Millisecond)
	release := make(chan struct{})
	runExecutor(h, executor.Config{Capacity: 4}, listen(t), map[string]executor.HandlerFunc{
		"gated": func(ctx context.Context, _ *executor.Request) (any, error) {
			<-release
			return map[string]bool{"ok": true}, nil
		},
	})
	h.apply(`
namespace: test
name: busy
version: 1.0.0
steps:
  - name: first
    handler: gated
  - name: second
    handler: noop
    depends_on: [first]
`)
	task := h.create("test", "busy", map[string]any{})
	require.Eventually(t, func() bool {
		return step(h.get(task.GetId()), "first").GetState() == coordinatorv1.State_STATE_IN_PROGRESS
	}, 10*time.Second, 5*time.Millisecond)

	// Another process takes the database's write lock.
	db, err := sql.Open("sqlite3", "file:"+n.path+"?_busy_timeout=0")
	require.NoError(t, err)
	defer db.Close()
	conn, err := db.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	require.NoError(t, err)

	// Creating a task fails clearly and stores nothing.
	_, err = h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "busy", IdempotencyKey: "while-locked"})
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	// The result that arrives now cannot be committed: the write fails, the
	// task is reloaded from the store, and the result is held, not lost.
	close(release)
	require.Eventually(t, func() bool { return metricValue(t, reg, "tasker_task_reloads_total") >= 1 },
		20*time.Second, time.Millisecond, "the result's write failed on the locked store")
	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetTasks(), 1, "the refused create stored nothing")
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, step(h.get(task.GetId()), "first").GetState())

	_, err = conn.ExecContext(context.Background(), "ROLLBACK")
	require.NoError(t, err)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 1, step(done, "first").GetAttempts(), "the held result was applied once the store recovered")
	resp, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "busy", IdempotencyKey: "while-locked"})
	require.NoError(t, err)
	require.True(t, resp.GetCreated())
}

// An attempt a coordinator adopted from an executor's heartbeat (it was
// dispatched before a restart, or by a coordinator that has lost the task)
// sends its result to whoever dispatched it, not necessarily here: seen in
// the multi-coordinator test, the old owner, having lost its lease, dropped
// it, and the adopter waited forever. Once the executor's heartbeats stop
// listing the attempt and no result has come, the attempt is presumed lost
// and runs again.
func TestAdoptedAttemptWhoseResultWentElsewhereRunsAgain(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{ExecutorGrace: time.Minute}, 0)
	f := startFakeExecutor(t, "exec-a", 1, "work")
	f.register(h)
	h.apply(oneStepTemplate)
	task := h.create("test", "one_step", map[string]any{})
	first := f.next()
	require.EqualValues(t, 1, first.GetAttempt())

	n.crash()
	f.breakStream()
	n.start()
	f.register(h)
	f.send(heartbeat(first))
	require.Eventually(t, func() bool { return n.coord.AttemptExecutor(task.GetId(), "work") == "exec-a" },
		10*time.Second, time.Millisecond, "the restarted coordinator adopted the running attempt")

	// The attempt ends; its result goes to another coordinator, so this
	// stream carries heartbeats without it and nothing else.
	f.send(heartbeat())
	f.send(heartbeat())
	second := f.next()
	require.Equal(t, first.GetStepId(), second.GetStepId())
	require.EqualValues(t, 2, second.GetAttempt(), "the adopted attempt was presumed lost and ran again")
	f.send(succeed(second, "exec-a"))
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	var lost bool
	for _, tr := range step(done, "work").GetTransitions() {
		lost = lost || strings.Contains(tr.GetReason(), "no result")
	}
	require.True(t, lost, "the failed attempt says why: %v", step(done, "work").GetTransitions())
}
