package coordinator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

const oneStepTemplate = `
namespace: test
name: one_step
version: 1.0.0
steps:
  - name: work
    handler: work
`

func executorInfo(t *testing.T, h *harness, id string) *coordinatorv1.ExecutorInfo {
	t.Helper()
	resp, err := h.client.ListExecutors(h.ctx, &coordinatorv1.ListExecutorsRequest{})
	require.NoError(t, err)
	for _, e := range resp.GetExecutors() {
		if e.GetId() == id {
			return e
		}
	}
	t.Fatalf("executor %s not listed", id)
	return nil
}

// Slots are freed by the stream a result arrives on, not by the executor id
// the message claims: a wrong id neither leaks the sender's slot nor frees
// another executor's, and a result for an attempt another executor runs is
// not applied from the wrong stream.
func TestSlotsAreAccountedByStreamNotByClaimedExecutorID(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h, _ := nodeHarness(t, coordinator.Config{Registerer: reg}, 0)
	a := startFakeExecutor(t, "exec-a", 1, "work")
	a.register(h)
	h.apply(oneStepTemplate)

	first := h.create("test", "one_step", map[string]any{"n": 1})
	st := a.next()
	a.send(succeed(st, "exec-ghost"))
	h.waitState(first.GetId(), coordinatorv1.State_STATE_COMPLETE)
	// a's only slot was freed by its stream: the next step reaches it.
	second := h.create("test", "one_step", map[string]any{"n": 2})
	onA := a.next()
	require.Equal(t, second.GetId(), onA.GetTaskId())

	// b runs a step; a sends b's result under b's name.
	b := startFakeExecutor(t, "exec-b", 1, "work")
	b.register(h)
	third := h.create("test", "one_step", map[string]any{"n": 3})
	onB := b.next()
	require.Equal(t, third.GetId(), onB.GetTaskId())
	a.send(succeed(onB, "exec-b"))
	a.send(succeed(onA, "exec-a"))
	h.waitState(second.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Eventually(t, func() bool { return metricValue(t, reg, "tasker_step_results_total", "outcome", "ignored") >= 1 }, 10*time.Second, time.Millisecond,
		"the forged result was read and ignored")
	require.EqualValues(t, 1, executorInfo(t, h, "exec-b").GetInFlight(), "b's slot stays taken: its step still runs there")
	require.EqualValues(t, 0, executorInfo(t, h, "exec-a").GetInFlight())
	got := h.get(third.GetId())
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, step(got, "work").GetState(), "a result from the wrong stream is not applied")

	b.send(succeed(onB, "exec-b"))
	h.waitState(third.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 0, executorInfo(t, h, "exec-b").GetInFlight())
}

// An executor reconnects without the attempt it had; failing that attempt
// writes to the store, which is slow right now. The stream goes on reading
// heartbeats meanwhile (they used to wait behind the write, and a long
// enough write tripped the liveness watchdog).
func TestSlowStoreDoesNotStallReadingHeartbeats(t *testing.T) {
	t.Parallel()
	st := &slowStore{Store: openSQLite(t), entered: make(chan struct{}, 1)}
	reg := prometheus.NewRegistry()
	h := storeHarness(t, st, coordinator.Config{Registerer: reg, ExecutorGrace: time.Minute})
	f := startFakeExecutor(t, "exec-f", 2, "work")
	f.register(h)
	h.apply(oneStepTemplate)
	h.create("test", "one_step", map[string]any{})
	f.next()

	// The executor comes back under the same id, having lost the attempt;
	// the write that fails it blocks in the store.
	st.block.Store(true)
	f.breakStream()
	h.waitExecutor("exec-f", false)
	f.register(h)
	f.send(heartbeat())
	select {
	case <-st.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the lost attempt's failure never reached the store")
	}
	read := func() float64 {
		return metricValue(t, reg, "tasker_executor_stream_messages_total", "kind", "heartbeat")
	}
	before := read()
	for range 5 {
		f.send(heartbeat())
	}
	require.Eventually(t, func() bool { return read() >= before+5 }, 10*time.Second, time.Millisecond,
		"heartbeats are read while the write is in the store")
	require.EqualValues(t, 1, st.inCalls.Load(), "the write is still in the store")
	st.block.Store(false)
}

// Each WatchTask message carries the task's state right after its
// transition, the same whether it is sent live or replayed from the store:
// the step's move to complete comes with the task still in_progress, the
// task's own move to complete after it.
func TestWatchTaskStateIsPerTransitionLiveAndReplayed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-w", 1, "work")
	f.register(h)
	h.apply(oneStepTemplate)
	task := h.create("test", "one_step", map[string]any{})
	st := f.next()

	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	watch := func() []string {
		stream, err := h.client.WatchTask(ctx, &coordinatorv1.WatchTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		var out []string
		for {
			msg, err := stream.Recv()
			if err != nil {
				return out
			}
			tr := msg.GetTransition()
			out = append(out, tr.GetStepName()+":"+tr.GetToState().String()+"/"+msg.GetTaskState().String())
		}
	}
	liveCh := make(chan []string, 1)
	stream, err := h.client.WatchTask(ctx, &coordinatorv1.WatchTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	// The catch-up is sent at once; once it is in, the rest is live.
	first, err := stream.Recv()
	require.NoError(t, err)
	go func() {
		out := []string{first.GetTransition().GetStepName() + ":" + first.GetTransition().GetToState().String() + "/" + first.GetTaskState().String()}
		for {
			msg, err := stream.Recv()
			if err != nil {
				liveCh <- out
				return
			}
			tr := msg.GetTransition()
			out = append(out, tr.GetStepName()+":"+tr.GetToState().String()+"/"+msg.GetTaskState().String())
		}
	}()
	f.send(succeed(st, "exec-w"))
	live := <-liveCh
	replayed := watch()
	require.Equal(t, replayed, live)
	require.Contains(t, live, "work:STATE_COMPLETE/STATE_IN_PROGRESS")
	require.Equal(t, ":STATE_COMPLETE/STATE_COMPLETE", live[len(live)-1])
}

// A stream's results are not applied one run at a time: while one run
// waits (here for its task, held by the test), a result read after it is
// applied and committed. The held result is applied once its task is free.
func TestResultsReadLaterDoNotWaitForAnEarlierRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-p", 4, "work")
	f.register(h)
	h.apply(oneStepTemplate)
	a := h.create("test", "one_step", map[string]any{"n": 1})
	b := h.create("test", "one_step", map[string]any{"n": 2})
	steps := map[string]*executorv1.ExecuteStep{}
	for range 2 {
		st := f.next()
		steps[st.GetTaskId()] = st
	}

	queued, release := h.coord.HoldTask(a.GetId())
	var once sync.Once
	defer once.Do(release)
	f.send(succeed(steps[a.GetId()], "exec-p"))
	require.Eventually(t, func() bool { return queued() == 1 }, 10*time.Second, time.Millisecond,
		"a's result reached its task and waits for it")
	f.send(succeed(steps[b.GetId()], "exec-p"))
	require.Eventually(t, func() bool { return h.get(b.GetId()).GetState() == coordinatorv1.State_STATE_COMPLETE },
		10*time.Second, time.Millisecond, "b's result, read after a's, is applied while a's waits")
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, h.get(a.GetId()).GetState())
	once.Do(release)
	h.waitState(a.GetId(), coordinatorv1.State_STATE_COMPLETE)
}
