package coordinator_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

const retryTemplate = `
namespace: test
name: retries
version: 1.0.0
steps:
  - name: first
    handler: noop
  - name: shaky
    handler: flaky
    depends_on: [first]
    config: {fail_times: 2}
    backoff: {initial: 5ms, multiplier: 2, max: 50ms}
  - name: after
    handler: noop
    depends_on: [shaky]
`

func TestRetryThenSucceed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(retryTemplate)
	task := h.create("test", "retries", map[string]any{})
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	shaky := step(done, "shaky")
	require.EqualValues(t, 3, shaky.GetAttempts())
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, shaky.GetState())
	require.Nil(t, shaky.GetError(), "a completed step carries no error")
	// Two failed attempts, each followed by an error→pending→in_progress retry.
	var errors, retries int
	for _, tr := range shaky.GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_ERROR {
			errors++
		}
		if tr.GetFromState() == coordinatorv1.State_STATE_ERROR && tr.GetToState() == coordinatorv1.State_STATE_PENDING {
			retries++
		}
	}
	require.Equal(t, 2, errors)
	require.Equal(t, 2, retries)
	requireParentsFirst(t, done)
}

func TestPermanentFailureFailsTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(`
namespace: test
name: permanent
version: 1.0.0
steps:
  - name: root
    handler: noop
  - name: broken
    handler: flaky
    depends_on: [root]
    config: {fail_times: 10, permanent: true}
  - name: child
    handler: noop
    depends_on: [broken]
  - name: grandchild
    handler: noop
    depends_on: [child]
`)
	task := h.create("test", "permanent", map[string]any{})
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	broken := step(failed, "broken")
	require.Equal(t, coordinatorv1.State_STATE_ERROR, broken.GetState())
	require.EqualValues(t, 1, broken.GetAttempts(), "a permanent failure is not retried")
	require.False(t, broken.GetError().GetRetryable())
	require.Equal(t, "FlakyFailure", broken.GetError().GetErrorClass())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(failed, "child").GetState())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(failed, "grandchild").GetState())
	require.Nil(t, failed.GetCompletedAt())
}

func TestRetryLimitExhausted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(`
namespace: test
name: exhaust
version: 1.0.0
steps:
  - name: shaky
    handler: flaky
    config: {fail_times: 10}
    retry_limit: 3
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
  - name: child
    handler: noop
    depends_on: [shaky]
`)
	task := h.create("test", "exhaust", map[string]any{})
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	shaky := step(failed, "shaky")
	require.EqualValues(t, 3, shaky.GetAttempts())
	require.True(t, shaky.GetError().GetRetryable(), "the failure itself was retryable; the limit ended it")
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(failed, "child").GetState())
}

func TestRequestedBackoffHonoured(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	h.apply(`
namespace: test
name: backoff
version: 1.0.0
steps:
  - name: slowpoke
    handler: flaky
    config: {fail_times: 1, backoff_ms: 300}
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
`)
	task := h.create("test", "backoff", map[string]any{})
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	s := step(done, "slowpoke")
	require.EqualValues(t, 2, s.GetAttempts())
	var failedAt, restartedAt time.Time
	for _, tr := range s.GetTransitions() {
		switch {
		case tr.GetToState() == coordinatorv1.State_STATE_ERROR:
			failedAt = tr.GetAt().AsTime()
		case tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS && tr.GetAttempt() == 2:
			restartedAt = tr.GetAt().AsTime()
		}
	}
	require.False(t, failedAt.IsZero())
	require.False(t, restartedAt.IsZero())
	require.GreaterOrEqual(t, restartedAt.Sub(failedAt), 300*time.Millisecond,
		"the handler asked for 300ms, the template's backoff is 1ms: the request wins")
}
