package coordinator_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// gate is a handler that blocks until released (or cancelled) and tells
// when it started.
type gate struct {
	started chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan struct{}, 16), release: make(chan struct{})} }

func (g *gate) handler() executor.HandlerFunc {
	return func(ctx context.Context, _ *executor.Request) (any, error) {
		g.started <- struct{}{}
		select {
		case <-g.release:
			return map[string]bool{"released": true}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (g *gate) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatal("gated handler never started")
	}
}

const failWhileRunningTemplate = `
namespace: test
name: fail_while_running
version: 1.0.0
steps:
  - name: hold
    handler: gated
  - name: boom
    handler: flaky
    depends_on: [start]
    config: {fail_times: 99, permanent: true}
  - name: start
    handler: noop
  - name: after
    handler: noop
    depends_on: [hold, boom]
`

// A step still running when its task fails records its result; the task
// stays in error, and an operator's resolution then finishes it.
func TestStepRunningWhenTaskFailsRecordsItsResult(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	h.startExecutor(4, map[string]executor.HandlerFunc{"gated": g.handler()})
	h.apply(failWhileRunningTemplate)
	task := h.create("test", "fail_while_running", map[string]any{})
	g.waitStarted(t)
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, step(failed, "hold").GetState())

	close(g.release)
	require.Eventually(t, func() bool {
		return step(h.get(task.GetId()), "hold").GetState() == coordinatorv1.State_STATE_COMPLETE
	}, 10*time.Second, 5*time.Millisecond, "the running step's result was recorded after its task failed")
	got := h.get(task.GetId())
	require.Equal(t, coordinatorv1.State_STATE_ERROR, got.GetState(), "a late success does not revive a failed task")
	require.EqualValues(t, 1, step(got, "hold").GetAttempts())

	_, err := h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: task.GetId(), StepName: "boom"})
	require.NoError(t, err)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, step(done, "after").GetState())
	requireParentsFirst(t, done)
}

// An operator retries a failed task while one of its steps still runs; the
// task finishes once that step's result arrives.
func TestRetryWhileAStepStillRunsFinishesTheTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	h.startExecutor(4, map[string]executor.HandlerFunc{"gated": g.handler()})
	h.apply(failWhileRunningTemplate)
	task := h.create("test", "fail_while_running", map[string]any{})
	g.waitStarted(t)
	h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)

	resp, err := h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, step(resp.GetTask(), "hold").GetState())
	// boom fails again for good; the task is back in error with hold still
	// running, and hold's result must still land.
	h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	close(g.release)
	require.Eventually(t, func() bool {
		return step(h.get(task.GetId()), "hold").GetState() == coordinatorv1.State_STATE_COMPLETE
	}, 10*time.Second, 5*time.Millisecond)
	_, err = h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: task.GetId(), StepName: "boom"})
	require.NoError(t, err)
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
}

// A retry that is due while every slot of its handler is taken waits for a
// slot without a timer: its task's retry timer is not armed (it used to
// fire at once, again and again, spinning a core until the slot freed), and
// the only wake-up is the one its backoff asked for.
func TestDueRetryWaitingForASlotArmsNoTimer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h, _ := nodeHarness(t, coordinator.Config{Registerer: reg}, 0)
	g := newGate()
	runExecutor(h, executor.Config{Capacity: 1}, listen(t), map[string]executor.HandlerFunc{"gated": g.handler()})
	h.apply(`
namespace: test
name: due_retry
version: 1.0.0
steps:
  - name: bounce
    handler: flaky
    config: {fail_times: 1, backoff_ms: 1}
  - name: hold
    handler: gated
`)
	task := h.create("test", "due_retry", map[string]any{})
	// bounce takes the only slot first and fails; hold, queued, gets the
	// freed slot and blocks; bounce's retry comes due with no slot free.
	g.waitStarted(t)
	require.Eventually(t, func() bool { return h.coord.WaitingForSlot(task.GetId(), "bounce") },
		10*time.Second, time.Millisecond, "bounce's due retry queued for a slot")
	require.False(t, h.coord.WakeArmed(task.GetId()), "no timer armed while the due retry waits for a slot")

	close(g.release)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 2, step(done, "bounce").GetAttempts())
	require.EqualValues(t, 1, metricValue(t, reg, "tasker_task_wakes_total"), "one wake: the end of bounce's backoff")
}

func executorConfig(capacity int) executor.Config { return executor.Config{Capacity: capacity} }

func gatedHandlers(g *gate) map[string]executor.HandlerFunc {
	return map[string]executor.HandlerFunc{"gated": g.handler()}
}

// An operator action refused on a finished task leaves the task as it was
// and not in memory (finished tasks are loaded for an action only).
func TestRefusedActionOnFinishedTaskLeavesNoTrace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(`
namespace: test
name: finished
version: 1.0.0
steps:
  - name: only
    handler: noop
`)
	task := h.create("test", "finished", map[string]any{})
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Eventually(t, func() bool { return !h.coord.InMemory(task.GetId()) }, 10*time.Second, time.Millisecond)

	_, err := h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: task.GetId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	require.False(t, h.coord.InMemory(task.GetId()), "refused retry left the task in memory")
	_, err = h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: task.GetId(), StepName: "only"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	require.False(t, h.coord.InMemory(task.GetId()), "refused resolve left the task in memory")
	again := h.get(task.GetId())
	require.Len(t, again.GetTransitions(), len(done.GetTransitions()), "nothing was written")
}

// NaN and infinities are not JSON: a context or a manual resolution's
// results holding one is refused naming where it is, and nothing is stored
// (structpb used to turn them into the string "NaN").
func TestNonFiniteNumbersAreRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(oneStepTemplate)
	for _, tc := range []struct {
		value *structpb.Value
		want  string
	}{
		{structpb.NewNumberValue(math.NaN()), "context.bad: NaN"},
		{structpb.NewNumberValue(math.Inf(1)), "context.bad: +Inf"},
		{structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewNumberValue(math.Inf(-1))}}), "context.bad[1]: -Inf"},
	} {
		ctx := &structpb.Struct{Fields: map[string]*structpb.Value{"ok": structpb.NewNumberValue(1), "bad": tc.value}}
		_, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "one_step", Context: ctx})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), tc.want)
	}
	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetTasks(), "nothing was stored")

	task := h.create("test", "one_step", map[string]any{})
	_, err = h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{
		TaskId: task.GetId(), StepName: "work",
		Results: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"score": structpb.NewNumberValue(math.NaN())}}),
	})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "results.score: NaN")
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(h.get(task.GetId()), "work").GetState())
}

// ListTasks finds a task by its id or idempotency key and keeps those
// created in a time range.
func TestListTasksSearchAndCreatedRange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(oneStepTemplate)
	var tasks []*coordinatorv1.Task
	for _, key := range []string{"first", "second", "third"} {
		tasks = append(tasks, h.create("test", "one_step", map[string]any{}, func(r *coordinatorv1.CreateTaskRequest) { r.IdempotencyKey = key }))
	}
	list := func(req *coordinatorv1.ListTasksRequest) []string {
		t.Helper()
		resp, err := h.client.ListTasks(h.ctx, req)
		require.NoError(t, err)
		var ids []string
		for _, task := range resp.GetTasks() {
			ids = append(ids, task.GetId())
		}
		return ids
	}
	require.Equal(t, []string{tasks[1].GetId()}, list(&coordinatorv1.ListTasksRequest{Search: tasks[1].GetId()}))
	require.Equal(t, []string{tasks[2].GetId()}, list(&coordinatorv1.ListTasksRequest{Search: "third"}))
	require.Empty(t, list(&coordinatorv1.ListTasksRequest{Search: "fourth"}))
	require.Equal(t, []string{tasks[2].GetId(), tasks[1].GetId()},
		list(&coordinatorv1.ListTasksRequest{CreatedAfter: tasks[1].GetCreatedAt()}))
	require.Equal(t, []string{tasks[1].GetId(), tasks[0].GetId()},
		list(&coordinatorv1.ListTasksRequest{CreatedBefore: tasks[2].GetCreatedAt()}))
	require.Equal(t, []string{tasks[1].GetId()},
		list(&coordinatorv1.ListTasksRequest{CreatedAfter: tasks[1].GetCreatedAt(), CreatedBefore: tasks[2].GetCreatedAt()}))
	_, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{CreatedAfter: tasks[2].GetCreatedAt(), CreatedBefore: tasks[1].GetCreatedAt()})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "created_after")
}

// ListTasks keeps the tasks whose context holds given values, through the
// API's PATH=VALUE text; a malformed entry is refused by name.
func TestListTasksByContext(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(oneStepTemplate)
	var ids []string
	for _, c := range []map[string]any{
		{"order_id": "A-1", "amount": 5, "customer": map[string]any{"id": "c-7"}},
		{"order_id": "A-2", "amount": "5", "paid": true},
		{"order_id": "A-3", "amount": 5.5, "customer": map[string]any{"id": "c-7"}, "paid": false},
	} {
		ids = append(ids, h.create("test", "one_step", c).GetId())
	}
	list := func(matches ...string) []string {
		t.Helper()
		resp, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{ContextEquals: matches})
		require.NoError(t, err)
		out := []string{}
		for _, task := range resp.GetTasks() {
			out = append(out, task.GetId())
		}
		return out
	}
	require.Equal(t, []string{ids[0]}, list("order_id=A-1"))
	require.Equal(t, []string{ids[0]}, list(`order_id="A-1"`))
	require.Equal(t, []string{ids[0]}, list("amount=5"))
	require.Equal(t, []string{ids[1]}, list(`amount="5"`))
	require.Equal(t, []string{ids[2]}, list("amount=5.5"))
	require.Equal(t, []string{ids[2], ids[0]}, list("customer.id=c-7"))
	require.Equal(t, []string{ids[2]}, list("customer.id=c-7", "paid=false"))
	require.Equal(t, []string{ids[1]}, list("paid=true"))
	require.Empty(t, list("order_id=A-4"))

	for _, tc := range []struct {
		matches []string
		want    string
	}{
		{[]string{"order_id=A-1", "order_id"}, `context_equals[1] "order_id": want PATH=VALUE`},
		{[]string{"items=[1]"}, `context_equals[0] "items=[1]": value [1] is a JSON object or array`},
		{[]string{"a..b=1"}, "has an empty key"},
		{strings.Split("a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1,a=1", ","), "context_equals: 9 matches, at most 8"},
	} {
		_, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{ContextEquals: tc.matches})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), tc.want)
	}
}
