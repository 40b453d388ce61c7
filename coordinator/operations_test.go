package coordinator_test

import (
	"context"
	"errors"
	"strings"
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
)

func TestCancelReachesRunningHandler(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h, _ := nodeHarness(t, coordinator.Config{Registerer: reg}, 0)
	cancelled := make(chan error, 1)
	started := make(chan struct{}, 1)
	runExecutor(h, executor.Config{Capacity: 4}, listen(t), map[string]executor.HandlerFunc{
		"block": func(ctx context.Context, _ *executor.Request) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			cancelled <- ctx.Err()
			return nil, ctx.Err()
		},
	})
	h.apply(`
namespace: test
name: cancel
version: 1.0.0
steps:
  - name: long
    handler: block
  - name: never
    handler: noop
    depends_on: [long]
`)
	task := h.create("test", "cancel", map[string]any{})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never started")
	}
	resp, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId(), Reason: "operator said so"})
	require.NoError(t, err)
	got := resp.GetTask()
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, got.GetState())
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, step(got, "long").GetState())
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, step(got, "never").GetState())
	select {
	case err := <-cancelled:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the running handler's context was not cancelled")
	}
	// The handler answers its cancel with a failure for that attempt; once
	// the coordinator has read it (and ignored it), nothing has changed.
	require.Eventually(t, func() bool { return metricValue(t, reg, "tasker_step_results_total", "outcome", "ignored") >= 1 }, 10*time.Second, time.Millisecond,
		"the cancelled attempt's late result arrived")
	require.Zero(t, metricValue(t, reg, "tasker_step_results_total", "outcome", "applied"))
	again := h.get(task.GetId())
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, again.GetState())
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, step(again, "long").GetState())
	require.Len(t, step(again, "long").GetTransitions(), 2, "in_progress, then cancelled: the late result added nothing")

	// Cancelling again is a no-op (a transition to the state it is in is
	// never an error); a cancelled task cannot be retried.
	resp, err = h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	require.Equal(t, len(again.GetSteps()[0].GetTransitions()), len(resp.GetTask().GetSteps()[0].GetTransitions()))
	_, err = h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: task.GetId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.False(t, h.coord.InMemory(task.GetId()), "a finished task loaded for a refused action leaves memory again")
}

func TestRetryErroredTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var open atomic.Bool
	h.startExecutor(4, map[string]executor.HandlerFunc{
		"gate": func(context.Context, *executor.Request) (any, error) {
			if !open.Load() {
				return nil, executor.Permanent(errors.New("gate closed"))
			}
			return map[string]bool{"passed": true}, nil
		},
	})
	h.apply(`
namespace: test
name: retry_task
version: 1.0.0
steps:
  - name: gate
    handler: gate
  - name: after
    handler: noop
    depends_on: [gate]
`)
	task := h.create("test", "retry_task", map[string]any{})
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	require.EqualValues(t, 1, step(failed, "gate").GetAttempts())

	open.Store(true)
	_, err := h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	gate := step(done, "gate")
	require.EqualValues(t, 2, gate.GetAttempts(), "attempt numbers keep counting, so stale results stay stale")
	require.EqualValues(t, 4, gate.GetMaxAttempts(), "a retried task's failed steps get a fresh retry_limit")
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, step(done, "after").GetState())

	_, err = h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: task.GetId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "only errored tasks can be retried")
}

func TestResolveStepUnblocksChildren(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(`
namespace: test
name: resolve
version: 1.0.0
steps:
  - name: broken
    handler: flaky
    config: {fail_times: 99, permanent: true}
  - name: child
    handler: echo
    depends_on: [broken]
`)
	task := h.create("test", "resolve", map[string]any{})
	h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)

	_, err := h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: task.GetId(), StepName: "nope"})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `"nope"`)

	_, err = h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: task.GetId(), StepName: "broken", Reason: "fixed by hand"})
	require.NoError(t, err)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	broken := step(done, "broken")
	require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, broken.GetState())
	last := broken.GetTransitions()[len(broken.GetTransitions())-1]
	require.Equal(t, "fixed by hand", last.GetReason())
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, step(done, "child").GetState())
	requireParentsFirst(t, done)
}

// Resolving the step that holds a task back finishes the task when
// nothing is left to run: the last step of a failed task, or every step
// of a task that never started (no executor hosts its handler). The task
// used to stay pending for good, its steps all settled.
func TestResolvingTheLastOpenStepCompletesTheTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(`
namespace: test
name: fails_last
version: 1.0.0
steps:
  - name: first
    handler: noop
  - name: broken
    handler: flaky
    config: {fail_times: 99, permanent: true}
    depends_on: [first]
`)
	h.apply(`
namespace: test
name: unhosted
version: 1.0.0
steps:
  - name: a
    handler: nobody_hosts_this
  - name: b
    handler: nobody_hosts_this
    depends_on: [a]
`)
	failed := h.create("test", "fails_last", map[string]any{})
	h.waitState(failed.GetId(), coordinatorv1.State_STATE_ERROR)
	_, err := h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: failed.GetId(), StepName: "broken"})
	require.NoError(t, err)
	done := h.waitState(failed.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, step(done, "broken").GetState())
	requireTaskPath(t, done, "pending", "in_progress", "error", "pending", "in_progress", "complete")

	waiting := h.create("test", "unhosted", map[string]any{})
	for _, name := range []string{"a", "b"} {
		_, err := h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: waiting.GetId(), StepName: name})
		require.NoError(t, err, name)
	}
	done = h.waitState(waiting.GetId(), coordinatorv1.State_STATE_COMPLETE)
	requireTaskPath(t, done, "pending", "in_progress", "complete")
}

// requireTaskPath checks the states a task went through, in order.
func requireTaskPath(t *testing.T, task *coordinatorv1.Task, states ...string) {
	t.Helper()
	var path []string
	for i, tr := range task.GetTransitions() {
		if i == 0 {
			path = append(path, stateName(tr.GetFromState()))
		}
		path = append(path, stateName(tr.GetToState()))
	}
	require.Equal(t, states, path)
}

func TestBypassSkippableStep(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(`
namespace: test
name: bypass
version: 1.0.0
steps:
  - name: start
    handler: noop
  - name: optional
    handler: flaky
    depends_on: [start]
    config: {fail_times: 99, permanent: true}
    skippable: true
  - name: finish
    handler: echo
    depends_on: [optional]
`)
	_, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "bypass", BypassSteps: []string{"start"}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `"start" is not skippable`)

	task := h.create("test", "bypass", map[string]any{}, func(r *coordinatorv1.CreateTaskRequest) {
		r.BypassSteps = []string{"optional"}
	})
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	optional := step(done, "optional")
	require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, optional.GetState())
	require.EqualValues(t, 0, optional.GetAttempts(), "a bypassed step never runs")
	require.Len(t, optional.GetTransitions(), 1)
	require.True(t, strings.Contains(optional.GetTransitions()[0].GetReason(), "bypass"))
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, step(done, "finish").GetState())
}

// stateName is a proto state as the store spells it (STATE_IN_PROGRESS:
// in_progress).
func stateName(s coordinatorv1.State) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
}
