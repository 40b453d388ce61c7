package coordinator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

func keyedTemplate(strategy string) string {
	return `
namespace: test
name: keyed-` + strategy + `
version: 1.0.0
concurrency:
  - key: context.customer
    max_running: 1
    strategy: ` + strategy + `
steps:
  - name: sync
    handler: work
`
}

// waitReason waits until the task's named step waits for the given
// reason, and returns the task.
func waitReason(t *testing.T, h *harness, id, stepName, reason string) *coordinatorv1.Task {
	t.Helper()
	var task *coordinatorv1.Task
	require.Eventually(t, func() bool {
		task = h.get(id)
		return step(task, stepName).GetWaiting().GetReason() == reason
	}, 10*time.Second, time.Millisecond, "step %s of task %s never waited for %s", stepName, id, reason)
	return task
}

// A task-level key with the queue strategy runs one task per customer at a
// time, the next in creation order; other customers are not held up.
func TestConcurrencyKeyQueuesPerValue(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-k", 10, "work")
	f.register(h)
	h.apply(keyedTemplate("queue"))

	a := h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": 1})
	first := f.next()
	require.Equal(t, a.GetId(), first.GetTaskId())
	b := h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": 2})
	c := h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": 3})
	got := waitReason(t, h, b.GetId(), "sync", "concurrency")
	require.Equal(t, "task:test/keyed-queue:context.customer=acme", step(got, "sync").GetWaiting().GetKey())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, got.GetState())
	waitReason(t, h, c.GetId(), "sync", "concurrency")

	other := h.create("test", "keyed-queue", map[string]any{"customer": "globex"})
	require.Equal(t, other.GetId(), f.next().GetTaskId(), "another customer runs at once")

	f.send(succeed(first, "exec-k"))
	second := f.next()
	require.Equal(t, b.GetId(), second.GetTaskId(), "the next in creation order")
	f.send(succeed(second, "exec-k"))
	require.Equal(t, c.GetId(), f.next().GetTaskId())
	h.waitState(b.GetId(), coordinatorv1.State_STATE_COMPLETE)
}

// cancel_newest cancels the newcomer while the key is full.
func TestConcurrencyKeyCancelNewest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-n", 10, "work")
	f.register(h)
	h.apply(keyedTemplate("cancel_newest"))
	a := h.create("test", "keyed-cancel_newest", map[string]any{"customer": "acme", "n": 1})
	first := f.next()
	b := h.create("test", "keyed-cancel_newest", map[string]any{"customer": "acme", "n": 2})
	got := h.waitState(b.GetId(), coordinatorv1.State_STATE_CANCELLED)
	require.Contains(t, taskReason(got), "cancel_newest")
	f.send(succeed(first, "exec-n"))
	h.waitState(a.GetId(), coordinatorv1.State_STATE_COMPLETE)
}

// cancel_in_progress cancels the running task for the newcomer, which runs
// once the cancelled one has ended.
func TestConcurrencyKeyCancelInProgress(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-c", 10, "work")
	f.register(h)
	h.apply(keyedTemplate("cancel_in_progress"))
	a := h.create("test", "keyed-cancel_in_progress", map[string]any{"customer": "acme", "n": 1})
	require.Equal(t, a.GetId(), f.next().GetTaskId())
	b := h.create("test", "keyed-cancel_in_progress", map[string]any{"customer": "acme", "n": 2})
	got := h.waitState(a.GetId(), coordinatorv1.State_STATE_CANCELLED)
	require.Contains(t, taskReason(got), b.GetId())
	require.Equal(t, b.GetId(), f.next().GetTaskId(), "the newcomer runs")
}

// A key that does not evaluate over the context is refused and nothing is
// stored.
func TestConcurrencyKeyMissingInContextIsInvalid(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(keyedTemplate("queue"))
	_, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "keyed-queue"})
	requireCode(t, err, codes.InvalidArgument, "concurrency[0].key")
	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{Namespace: "test"})
	require.NoError(t, err)
	require.Empty(t, list.GetTasks())
}

// Steps drawing on a rate limit are dispatched no faster than it allows:
// over every window of the stored dispatch times, at most
// rate×window+burst.
func TestRateLimitBoundsDispatches(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	const units, burst = 20, 3
	period := time.Second
	_, err := st.RateLimitSet(context.Background(), &store.RateLimitSetParams{Name: "api", Units: units, Period: period, Burst: burst, At: time.Now()})
	require.NoError(t, err)
	h := serveCoordinator(t, coordinator.Config{Store: st}, nil)
	h.startExecutor(100, nil)
	h.apply(`
namespace: test
name: limited
version: 1.0.0
steps:
  - name: call
    handler: noop
    rate_limits:
      - name: api
`)
	var ids []string
	for i := range 15 {
		ids = append(ids, h.create("test", "limited", map[string]any{"n": i}).GetId())
	}
	var dispatched []time.Time
	for _, id := range ids {
		task := h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
		for _, tr := range step(task, "call").GetTransitions() {
			if tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS {
				dispatched = append(dispatched, tr.GetAt().AsTime())
			}
		}
	}
	require.Len(t, dispatched, len(ids))
	requireWithinRate(t, dispatched, units, period, burst)
	require.Greater(t, dispatched[len(dispatched)-1].Sub(dispatched[0]), time.Duration(len(ids)-burst-1)*period/units,
		"15 dispatches at 20/s after a burst of 3 take at least 11 token intervals")
}

// requireWithinRate checks every window between two dispatches.
func requireWithinRate(t *testing.T, at []time.Time, units int, period time.Duration, burst int) {
	t.Helper()
	sorted := append([]time.Time(nil), at...)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	for i := range sorted {
		for j := i; j < len(sorted); j++ {
			w := sorted[j].Sub(sorted[i])
			allowed := float64(units)*w.Seconds()/period.Seconds() + float64(burst)
			require.LessOrEqual(t, float64(j-i+1), allowed+1e-9, "%d dispatches within %s", j-i+1, w)
		}
	}
}

// taskReason is the reason of the task's last transition.
func taskReason(task *coordinatorv1.Task) string {
	var reason string
	for _, tr := range task.GetTransitions() {
		if tr.GetStepName() == "" {
			reason = tr.GetReason()
		}
	}
	return reason
}

// A step without tokens says so, naming the limit and when they come; a
// step-level key is shared by steps of its handler across templates.
func TestFlowControlWaitingReasons(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	_, err := st.RateLimitSet(context.Background(), &store.RateLimitSetParams{Name: "slow", Units: 1, Period: time.Hour, Burst: 1, At: time.Now()})
	require.NoError(t, err)
	h := serveCoordinator(t, coordinator.Config{Store: st}, nil)
	f := startFakeExecutor(t, "exec-w", 10, "charge", "mail")
	f.register(h)
	h.apply(`
namespace: test
name: limited-slow
version: 1.0.0
steps:
  - name: mail
    handler: mail
    rate_limits:
      - name: slow
        key: context.account
`)
	for _, name := range []string{"charge-a", "charge-b"} {
		h.apply(`
namespace: test
name: ` + name + `
version: 1.0.0
steps:
  - name: pay
    handler: charge
    concurrency:
      - key: context.account
        max_running: 1
`)
	}
	m1 := h.create("test", "limited-slow", map[string]any{"account": "x", "n": 1})
	require.Equal(t, m1.GetId(), f.next().GetTaskId())
	m2 := h.create("test", "limited-slow", map[string]any{"account": "x", "n": 2})
	got := step(waitReason(t, h, m2.GetId(), "mail", "rate_limit"), "mail").GetWaiting()
	require.Equal(t, "slow[x]", got.GetKey())
	require.WithinDuration(t, time.Now().Add(time.Hour), got.GetUntil().AsTime(), 5*time.Minute)
	m3 := h.create("test", "limited-slow", map[string]any{"account": "y"})
	require.Equal(t, m3.GetId(), f.next().GetTaskId(), "another key value has its own bucket")

	a := h.create("test", "charge-a", map[string]any{"account": "x"})
	pay := f.next()
	require.Equal(t, a.GetId(), pay.GetTaskId())
	b := h.create("test", "charge-b", map[string]any{"account": "x"})
	got = step(waitReason(t, h, b.GetId(), "pay", "concurrency"), "pay").GetWaiting()
	require.Equal(t, "handler:charge:context.account=x", got.GetKey())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, h.get(b.GetId()).GetState(), "nothing of the task was dispatched")
	f.send(succeed(pay, "exec-w"))
	require.Equal(t, b.GetId(), f.next().GetTaskId())
}

// Waiters for a key go highest priority first, first come within one.
func TestConcurrencyKeyQueueRespectsPriority(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-pk", 10, "work")
	f.register(h)
	h.apply(keyedTemplate("queue"))
	h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": 0})
	running := f.next()
	var queued []*coordinatorv1.Task
	for i, p := range []int32{1, 3, 4, 2, 4} {
		task := h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": i + 1}, withPriority(p))
		waitReason(t, h, task.GetId(), "sync", "concurrency")
		queued = append(queued, task)
	}
	want := []string{queued[2].GetId(), queued[4].GetId(), queued[1].GetId(), queued[3].GetId(), queued[0].GetId()}
	var order []string
	for range queued {
		f.send(succeed(running, "exec-pk"))
		running = f.next()
		order = append(order, running.GetTaskId())
	}
	require.Equal(t, want, order, "priority 4, 4 (first come first), 3, 2, 1")
}

// A task of low priority waiting for a key gains a level per aging
// waited, so a stream of higher-priority tasks cannot hold it back for
// ever.
func TestConcurrencyKeyLowPriorityIsNotStarved(t *testing.T) {
	t.Parallel()
	const aging = 20 * time.Millisecond
	h := serveCoordinator(t, coordinator.Config{Store: openSQLite(t), PriorityAging: aging}, nil)
	f := startFakeExecutor(t, "exec-st", 10, "work")
	f.register(h)
	h.apply(keyedTemplate("queue"))
	h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": -1}, withPriority(4))
	running := f.next()
	low := h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": 0}, withPriority(1))
	waitReason(t, h, low.GetId(), "sync", "concurrency")
	// Each round a new task of the highest priority joins the line before
	// the running one ends; the low one must win a round eventually.
	for round := 1; ; round++ {
		require.Less(t, round, 2000, "the low-priority task was passed over 2000 times")
		high := h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": round}, withPriority(4))
		waitReason(t, h, high.GetId(), "sync", "concurrency")
		f.send(succeed(running, "exec-st"))
		running = f.next()
		if running.GetTaskId() == low.GetId() {
			t.Logf("admitted after %d rounds", round)
			return
		}
	}
}

// A key's holder and its waiter survive a crash of the coordinator: after
// the restart the waiter still waits (the store counts the holder from its
// row), and starts once the holder, whose result arrives late, has ended.
func TestConcurrencyKeySurvivesRestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	g := newGate()
	h.startExecutor(4, map[string]executor.HandlerFunc{"work": g.handler()})
	h.apply(keyedTemplate("queue"))
	a := h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": 1})
	g.waitStarted(t)
	b := h.create("test", "keyed-queue", map[string]any{"customer": "acme", "n": 2})
	waitReason(t, h, b.GetId(), "sync", "concurrency")

	n.crash()
	n.start()
	require.Eventually(t, func() bool {
		resp, err := h.client.GetTask(h.ctx, &coordinatorv1.GetTaskRequest{Id: b.GetId()})
		return err == nil && step(resp.GetTask(), "sync").GetWaiting().GetReason() == "concurrency"
	}, 20*time.Second, 10*time.Millisecond, "after the restart the second task waits for the key again")
	close(g.release)
	doneA := h.waitState(a.GetId(), coordinatorv1.State_STATE_COMPLETE)
	doneB := h.waitState(b.GetId(), coordinatorv1.State_STATE_COMPLETE)
	var aEnd, bStart int64
	for _, tr := range doneA.GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_COMPLETE {
			aEnd = tr.GetSeq()
		}
	}
	for _, tr := range doneB.GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS {
			bStart = tr.GetSeq()
		}
	}
	require.Greater(t, bStart, aEnd, "the second task started only after the first ended")
}
