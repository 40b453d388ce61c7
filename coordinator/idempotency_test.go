package coordinator_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

func TestCreateIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(`
namespace: test
name: idem
version: 1.0.0
steps:
  - name: only
    handler: noop
`)
	create := func(key string, ctx map[string]any) *coordinatorv1.CreateTaskResponse {
		s, err := structpb.NewStruct(ctx)
		require.NoError(t, err)
		resp, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "idem", Context: s, IdempotencyKey: key})
		require.NoError(t, err)
		return resp
	}
	first := create("order-42", map[string]any{"a": 1})
	require.True(t, first.GetCreated())
	again := create("order-42", map[string]any{"a": 2})
	require.False(t, again.GetCreated())
	require.Equal(t, first.GetTask().GetId(), again.GetTask().GetId(), "the key, not the context, identifies the task")

	// Without a key the identity is template + context, whatever the key order.
	h1 := create("", map[string]any{"x": 1, "y": map[string]any{"p": true, "q": "s"}})
	h2 := create("", map[string]any{"y": map[string]any{"q": "s", "p": true}, "x": 1})
	require.True(t, h1.GetCreated())
	require.False(t, h2.GetCreated())
	require.Equal(t, h1.GetTask().GetId(), h2.GetTask().GetId())
	h3 := create("", map[string]any{"x": 2})
	require.True(t, h3.GetCreated())

	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetTasks(), 3)
}

func TestDuplicateAndStaleResultsChangeNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	executorID, _ := h.startExecutor(4, nil)
	h.apply(`
namespace: test
name: stale
version: 1.0.0
steps:
  - name: shaky
    handler: flaky
    config: {fail_times: 1}
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
  - name: after
    handler: noop
    depends_on: [shaky]
`)
	task := h.create("test", "stale", map[string]any{})
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	shaky := step(done, "shaky")
	require.EqualValues(t, 2, shaky.GetAttempts())
	before := len(shaky.GetTransitions())
	results, err := shaky.GetResults().MarshalJSON()
	require.NoError(t, err)

	report := func(attempt int32, success bool) bool {
		r := &executorv1.StepResult{TaskId: task.GetId(), StepId: shaky.GetId(), Attempt: attempt, ExecutorId: executorID}
		if success {
			r.Outcome = &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{Results: []byte(`{"forged":true}`)}}
		} else {
			r.Outcome = &executorv1.StepResult_Failure{Failure: &executorv1.StepFailure{Message: "late", Permanent: true}}
		}
		resp, err := h.client.ReportStepResult(h.ctx, &coordinatorv1.ReportStepResultRequest{Result: r})
		require.NoError(t, err)
		return resp.GetApplied()
	}
	require.False(t, report(1, true), "a result for an old attempt is stale")
	require.False(t, report(2, true), "a duplicate of the applied result")
	require.False(t, report(2, false), "a contradicting duplicate")
	require.False(t, report(3, true), "an attempt that never ran")

	after := h.get(task.GetId())
	s := step(after, "shaky")
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, after.GetState())
	require.Len(t, s.GetTransitions(), before)
	got, err := s.GetResults().MarshalJSON()
	require.NoError(t, err)
	require.JSONEq(t, string(results), string(got))
}

func TestIdentityStrategies(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, identity := range []string{"caller_key", "unique", "strict"} {
		h.apply(`
namespace: test
name: id-` + identity + `
version: 1.0.0
identity: ` + identity + `
steps:
  - name: only
    handler: noop
`)
	}
	create := func(name, key string) (*coordinatorv1.CreateTaskResponse, error) {
		s, err := structpb.NewStruct(map[string]any{"a": 1})
		require.NoError(t, err)
		return h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: name, Context: s, IdempotencyKey: key})
	}
	count := func(name string) int {
		list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{Name: name})
		require.NoError(t, err)
		return len(list.GetTasks())
	}

	// caller_key: no key is refused, naming the field; nothing stored.
	_, err := create("id-caller_key", "")
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, err.Error(), "idempotency_key")
	require.Contains(t, err.Error(), "caller_key")
	require.Zero(t, count("id-caller_key"))
	a, err := create("id-caller_key", "k1")
	require.NoError(t, err)
	b, err := create("id-caller_key", "k1")
	require.NoError(t, err)
	require.True(t, a.GetCreated())
	require.False(t, b.GetCreated())
	require.Equal(t, a.GetTask().GetId(), b.GetTask().GetId())
	// A debounced create is identified by the caller's debounce key.
	_, err = h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "id-caller_key",
		Debounce: &coordinatorv1.Debounce{Key: "d1", Delay: durationpb.New(time.Hour)}})
	require.NoError(t, err)

	// unique: the same context twice is two tasks; a key still dedupes.
	u1, err := create("id-unique", "")
	require.NoError(t, err)
	u2, err := create("id-unique", "")
	require.NoError(t, err)
	require.True(t, u1.GetCreated())
	require.True(t, u2.GetCreated())
	require.NotEqual(t, u1.GetTask().GetId(), u2.GetTask().GetId())
	k1, err := create("id-unique", "same")
	require.NoError(t, err)
	k2, err := create("id-unique", "same")
	require.NoError(t, err)
	require.False(t, k2.GetCreated())
	require.Equal(t, k1.GetTask().GetId(), k2.GetTask().GetId())
	require.Equal(t, 3, count("id-unique"))

	// strict (spelt out): today's hash of template and context.
	s1, err := create("id-strict", "")
	require.NoError(t, err)
	s2, err := create("id-strict", "")
	require.NoError(t, err)
	require.False(t, s2.GetCreated())
	require.Equal(t, s1.GetTask().GetId(), s2.GetTask().GetId())

	got, err := h.client.GetTemplate(h.ctx, &coordinatorv1.GetTemplateRequest{Namespace: "test", Name: "id-unique"})
	require.NoError(t, err)
	require.Equal(t, "unique", got.GetTemplate().GetIdentity())
}
