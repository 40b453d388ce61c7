package coordinator_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// Every step that is neither running nor finished says why it waits, in
// GetTask and in the tasker_steps_waiting gauge: a parent not done, a
// retry not due, no executor hosting its handler, or every executor that
// hosts it full.
func TestWaitingReasons(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	st := openSQLite(t)
	h := serveCoordinator(t, coordinator.Config{Store: st, Registerer: reg}, nil)
	f := startFakeExecutor(t, "exec-hold", 1, "hold")
	f.register(h)
	runExecutor(h, executorConfig(4), listen(t), nil)
	h.apply(`
namespace: test
name: waiting
version: 1.0.0
steps:
  - name: first
    handler: hold
  - name: second
    handler: hold
  - name: child
    handler: noop
    depends_on: [first]
  - name: orphan
    handler: nobody_hosts_this
  - name: shaky
    handler: flaky
    config: {fail_times: 1}
    backoff: {initial: 1h, multiplier: 1, max: 1h}
`)
	task := h.create("test", "waiting", map[string]any{})
	running := f.next()
	var got *coordinatorv1.Task
	require.Eventually(t, func() bool {
		got = h.get(task.GetId())
		return step(got, "shaky").GetState() == coordinatorv1.State_STATE_ERROR
	}, 10*time.Second, time.Millisecond)
	first := step(got, "first")
	require.Equal(t, running.GetStepName(), first.GetName())
	require.Nil(t, first.GetWaiting(), "a running step does not wait")

	require.Equal(t, "capacity", step(got, "second").GetWaiting().GetReason())
	require.Equal(t, "hold", step(got, "second").GetWaiting().GetHandler())
	require.Equal(t, "parents", step(got, "child").GetWaiting().GetReason())
	require.Equal(t, []string{"first"}, step(got, "child").GetWaiting().GetOn())
	require.Equal(t, "no_executor", step(got, "orphan").GetWaiting().GetReason())
	require.Equal(t, "nobody_hosts_this", step(got, "orphan").GetWaiting().GetHandler())
	shaky := step(got, "shaky")
	require.Equal(t, "backoff", shaky.GetWaiting().GetReason())
	require.Equal(t, shaky.GetNextRetryAt().AsTime(), shaky.GetWaiting().GetUntil().AsTime())

	// A scrape skips a task whose lock is busy (a heartbeat's adoption
	// check, say) and counts it as at the scrape before, which for the
	// first scrape is nothing: ask until one finds it idle.
	waiting := func(reason, handler string) float64 {
		return metricValue(t, reg, "tasker_steps_waiting", "reason", reason, "handler", handler)
	}
	require.Eventually(t, func() bool { return waiting("capacity", "hold") == 1 }, 10*time.Second, time.Millisecond)
	require.EqualValues(t, 1, waiting("no_executor", "nobody_hosts_this"))
	require.EqualValues(t, 1, waiting("capacity", "hold"))
	require.EqualValues(t, 1, waiting("parents", "noop"))
	require.EqualValues(t, 1, waiting("backoff", "flaky"))

	// The first step's result frees the slot: second runs, child is
	// dispatched, and neither waits any more.
	f.send(succeed(running, "exec-hold"))
	again := f.next()
	require.Equal(t, "second", again.GetStepName())
	require.Eventually(t, func() bool {
		got = h.get(task.GetId())
		return step(got, "child").GetState() == coordinatorv1.State_STATE_COMPLETE
	}, 10*time.Second, time.Millisecond)
	require.Nil(t, step(got, "second").GetWaiting())
	require.Nil(t, step(got, "child").GetWaiting())
	require.Equal(t, "no_executor", step(got, "orphan").GetWaiting().GetReason(), "still nobody hosts it")
}

// ListExecutors says when each executor was last heard from and which
// coordinators it serves, and names the handlers that templates use but no
// connected executor hosts.
func TestListExecutorsShowsHeartbeatsAndUnhostedHandlers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	runExecutor(h, executorConfig(2), listen(t), nil)
	h.apply(`
namespace: test
name: half_hosted
version: 1.0.0
steps:
  - name: known
    handler: noop
  - name: unknown
    handler: nobody_hosts_this
`)
	resp, err := h.client.ListExecutors(h.ctx, &coordinatorv1.ListExecutorsRequest{})
	require.NoError(t, err)
	require.Len(t, resp.GetExecutors(), 1)
	ex := resp.GetExecutors()[0]
	require.NotNil(t, ex.GetLastHeard())
	require.False(t, ex.GetLastHeard().AsTime().Before(ex.GetConnectedAt().AsTime()))
	require.Equal(t, []string{h.addr}, ex.GetCoordinators())
	require.Len(t, resp.GetUnhosted(), 1)
	require.Equal(t, "nobody_hosts_this", resp.GetUnhosted()[0].GetHandler())
	require.Equal(t, []string{"test/half_hosted@1.0.0"}, resp.GetUnhosted()[0].GetTemplates())
}
