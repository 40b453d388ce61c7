package coordinator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// TestTaskRetention: a coordinator with a task retention deletes, at its
// start and every minute after, the tasks that finished longer ago, once
// its event retention has taken their events out of the log; a task still
// running stays.
func TestTaskRetention(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	h := serveCoordinator(t, coordinator.Config{Store: st}, nil)
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 8}, listen(t), nil)
	h.apply(fmt.Sprintf(eventsTemplate, "alpha", "pair"))
	h.apply(`
namespace: alpha
name: long
version: 1.0.0
steps:
  - name: wait
    handler: sleep
    config: {ms: 600000}
`)
	done := h.create("alpha", "pair", map[string]any{"n": 1})
	h.waitState(done.GetId(), coordinatorv1.State_STATE_COMPLETE)
	// Running, with the newest events.
	running := h.create("alpha", "long", map[string]any{"n": 2})
	h.waitState(running.GetId(), coordinatorv1.State_STATE_IN_PROGRESS)
	// Stopped without waiting for the sleeping step.
	stopNow, cancel := context.WithCancel(h.ctx)
	cancel()
	_ = h.coord.Stop(stopNow)

	// The same store under a coordinator that keeps events and tasks a
	// nanosecond: its retention loop prunes both at start.
	h = serveCoordinator(t, coordinator.Config{Store: st, EventRetention: time.Nanosecond, TaskRetention: time.Nanosecond}, nil)
	require.Eventually(t, func() bool {
		_, err := h.client.GetTask(h.ctx, &coordinatorv1.GetTaskRequest{Id: done.GetId()})
		return status.Code(err) == codes.NotFound
	}, 60*time.Second, 10*time.Millisecond, "the finished task was not deleted")
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, h.get(running.GetId()).GetState())
	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{Namespace: "alpha"})
	require.NoError(t, err)
	require.Len(t, list.GetTasks(), 1)
	require.Equal(t, running.GetId(), list.GetTasks()[0].GetId())
}

// TestTaskRetentionNeedsEventRetention: tasks go only once their events
// have left the log, so a task retention without an event retention, or
// shorter than it, is refused rather than silently never (or later)
// acting.
func TestTaskRetentionNeedsEventRetention(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	for _, tc := range []struct {
		tasks, events time.Duration
		want          string
	}{
		{time.Hour, 0, "a task retention needs an event retention"},
		{time.Hour, 2 * time.Hour, "task retention 1h0m0s is shorter than the event retention 2h0m0s"},
		{-time.Hour, time.Hour, "task retention -1h0m0s is negative"},
	} {
		_, err := coordinator.New(coordinator.Config{Store: st, TaskRetention: tc.tasks, EventRetention: tc.events})
		require.ErrorContains(t, err, tc.want)
	}
	c, err := coordinator.New(coordinator.Config{Store: st, TaskRetention: 2 * time.Hour, EventRetention: 2 * time.Hour})
	require.NoError(t, err)
	require.NotNil(t, c)
}
