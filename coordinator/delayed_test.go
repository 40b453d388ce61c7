package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

const delayedTemplate = `
namespace: test
name: delayed
version: 1.0.0
steps:
  - name: first
    handler: noop
  - name: second
    handler: noop
    depends_on: [first]
`

// firstDispatch is when the task's first step was dispatched, from its
// stored transitions.
func firstDispatch(t *testing.T, task *coordinatorv1.Task) time.Time {
	t.Helper()
	for _, tr := range step(task, "first").GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS {
			return tr.GetAt().AsTime()
		}
	}
	t.Fatalf("first never dispatched: %v", step(task, "first").GetTransitions())
	return time.Time{}
}

// A task created with a delay is stored at once, pending, its steps
// waiting with reason "scheduled" until its start time; it starts at that
// time (never before), also when the coordinator restarted in between.
func TestDelayedTaskStartsAtItsTimeAcrossARestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), nil)
	h.apply(delayedTemplate)
	runAt := time.Now().Add(1500 * time.Millisecond)
	task := h.create("test", "delayed", map[string]any{}, func(r *coordinatorv1.CreateTaskRequest) {
		r.RunAt = timestamppb.New(runAt)
	})
	require.Equal(t, coordinatorv1.State_STATE_PENDING, task.GetState())
	require.Equal(t, runAt.UTC(), task.GetRunAt().AsTime())

	// However slow the machine, the restart rearms the start time from
	// the store, and nothing runs before it.
	n.crash()
	n.start()
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.False(t, firstDispatch(t, done).Before(runAt.UTC()), "dispatched at %s, before its start time %s", firstDispatch(t, done), runAt)
}

// lateCreateStore is a real store whose creates of delayed tasks finish
// only after the tasks' start times, as a write slower than a short delay
// does.
type lateCreateStore struct{ store.Store }

func (s lateCreateStore) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.Task, bool, error) {
	if !p.Task.RunAt.IsZero() {
		time.Sleep(time.Until(p.Task.RunAt) + time.Millisecond)
	}
	return s.Store.TaskCreate(ctx, p)
}

// A delayed task whose create is stored only after its start time still
// starts: the coordinator arms its wake for a start time that was ahead
// when it decided not to start the task yet, not only for one still ahead
// when the write ended.
func TestDelayedCreateSlowerThanItsDelay(t *testing.T) {
	t.Parallel()
	h := storeHarness(t, lateCreateStore{openSQLite(t)}, coordinator.Config{})
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), nil)
	h.apply(delayedTemplate)
	task := h.create("test", "delayed", map[string]any{}, func(r *coordinatorv1.CreateTaskRequest) {
		r.Delay = durationpb.New(10 * time.Millisecond)
	})
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
}

// A delayed task waits with reason "scheduled", can be cancelled before it
// starts, and its run_at and delay are checked.
func TestDelayedTaskCancelledBeforeItStarts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(delayedTemplate)
	task := h.create("test", "delayed", map[string]any{}, func(r *coordinatorv1.CreateTaskRequest) {
		r.Delay = durationpb.New(time.Hour)
	})
	require.InDelta(t, time.Until(task.GetRunAt().AsTime()).Seconds(), time.Hour.Seconds(), 60)
	got := h.get(task.GetId())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, got.GetState())
	require.Equal(t, "scheduled", step(got, "first").GetWaiting().GetReason())
	require.Equal(t, task.GetRunAt().AsTime(), step(got, "first").GetWaiting().GetUntil().AsTime())
	require.Equal(t, "parents", step(got, "second").GetWaiting().GetReason())
	resp, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, resp.GetTask().GetState())
	for _, s := range resp.GetTask().GetSteps() {
		require.Zero(t, s.GetAttempts(), "nothing ran")
	}

	for _, tc := range []struct {
		req  *coordinatorv1.CreateTaskRequest
		want string
	}{
		{&coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "delayed", Delay: durationpb.New(-time.Second)}, "delay: -1s is negative"},
		{&coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "delayed", Delay: durationpb.New(time.Second), RunAt: timestamppb.Now()}, "run_at and delay"},
	} {
		_, err := h.client.CreateTask(h.ctx, tc.req)
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Contains(t, status.Convert(err).Message(), tc.want)
	}
}
