package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
