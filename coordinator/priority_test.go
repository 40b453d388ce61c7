package coordinator_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

const priorityTemplate = `
namespace: test
name: prio
version: 1.0.0
priority: 3
steps:
  - name: work
    handler: work
`

func withPriority(p int32) func(*coordinatorv1.CreateTaskRequest) {
	return func(r *coordinatorv1.CreateTaskRequest) { r.Priority = p }
}

// waitAllQueued waits until every task's only step waits for a slot.
func waitAllQueued(t *testing.T, h *harness, tasks ...*coordinatorv1.Task) {
	t.Helper()
	for _, task := range tasks {
		require.Eventually(t, func() bool { return h.coord.WaitingForSlot(task.GetId(), "work") }, 10*time.Second, time.Millisecond)
	}
}

// When executor slots are short, higher priority is dispatched first, and
// first-come within a priority; a task takes its template's priority
// unless it gives its own.
func TestPriorityOrderUnderContention(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-p", 1, "work")
	f.register(h)
	h.apply(priorityTemplate)
	holder := h.create("test", "prio", map[string]any{"n": 0})
	require.EqualValues(t, 3, holder.GetPriority(), "the template's priority")
	held := f.next()

	var queued []*coordinatorv1.Task
	for i, p := range []int32{1, 3, 4, 2, 4} {
		queued = append(queued, h.create("test", "prio", map[string]any{"n": i + 1}, withPriority(p)))
	}
	waitAllQueued(t, h, queued...)
	want := []string{queued[2].GetId(), queued[4].GetId(), queued[1].GetId(), queued[3].GetId(), queued[0].GetId()}

	var order []string
	running := held
	for range queued {
		f.send(succeed(running, "exec-p"))
		running = f.next()
		order = append(order, running.GetTaskId())
	}
	require.Equal(t, want, order, "priority 4, 4 (first come first), 3, 2, 1")

	_, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "prio", Priority: 5})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "priority: 5 is out of range")
}

// A step of low priority that has waited long gains priority, so a stream
// of higher-priority work cannot pass it over for ever.
func TestLowPriorityIsNotStarved(t *testing.T) {
	t.Parallel()
	const aging = 50 * time.Millisecond
	h := serveCoordinator(t, coordinator.Config{Store: openSQLite(t), PriorityAging: aging}, nil)
	f := startFakeExecutor(t, "exec-s", 1, "work")
	f.register(h)
	h.apply(priorityTemplate)
	h.create("test", "prio", map[string]any{"n": 0})
	held := f.next()

	low := h.create("test", "prio", map[string]any{"n": 1}, withPriority(1))
	waitAllQueued(t, h, low)
	// Four levels' worth of waiting (and more, however slow the machine)
	// lift it above a priority-4 newcomer, which waits from now on.
	since := time.Now()
	for time.Since(since) < 4*aging {
		time.Sleep(aging)
	}
	high := h.create("test", "prio", map[string]any{"n": 2}, withPriority(4))
	waitAllQueued(t, h, high)

	f.send(succeed(held, "exec-s"))
	next := f.next()
	require.Equal(t, low.GetId(), next.GetTaskId(), "the long-waiting low-priority step went first")
	f.send(succeed(next, "exec-s"))
	require.Equal(t, high.GetId(), f.next().GetTaskId())
}
