package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// getLarge reads a task whose results are over gRPC's default 4 MiB
// response limit.
func getLarge(t *testing.T, h *harness, id string) *coordinatorv1.Task {
	t.Helper()
	resp, err := h.client.GetTask(h.ctx, &coordinatorv1.GetTaskRequest{Id: id}, grpc.MaxCallRecvMsgSize(64<<20))
	require.NoError(t, err)
	return resp.GetTask()
}

// A step joining two parents of 3 MiB each gets a request of over 6 MiB,
// past gRPC's default 4 MiB: the Go executor accepts it (64 MiB by
// default, declared in Describe), and the step runs once.
func TestLargeRequestReachesTheExecutor(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	blob := strings.Repeat("x", 3<<20)
	var got int
	h.startExecutor(4, map[string]executor.HandlerFunc{
		"big": func(context.Context, *executor.Request) (any, error) { return map[string]string{"blob": blob}, nil },
		"join": func(_ context.Context, req *executor.Request) (any, error) {
			got = len(req.ParentResults["a"]) + len(req.ParentResults["b"])
			return map[string]int{"bytes": got}, nil
		},
	})
	h.apply(`
namespace: test
name: large_join
version: 1.0.0
steps:
  - name: a
    handler: big
  - name: b
    handler: big
  - name: c
    handler: join
    depends_on: [a, b]
`)
	task := h.create("test", "large_join", map[string]any{})
	var done *coordinatorv1.Task
	require.Eventually(t, func() bool {
		done = getLarge(t, h, task.GetId())
		return done.GetState() == coordinatorv1.State_STATE_COMPLETE || done.GetState() == coordinatorv1.State_STATE_ERROR
	}, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, done.GetState(), "%v", step(done, "c").GetTransitions())
	require.EqualValues(t, 1, step(done, "c").GetAttempts())
	require.Greater(t, got, 6<<20)
}

// A step whose request would be over its executor's declared receive limit
// is not sent: it fails for good with InputTooLarge, naming the sizes, and
// the executor's stream carries on, so an attempt in flight on it is not
// lost. (Sent, the message would end the stream: every attempt on it
// failed as "executor lost", again at each retry.)
func TestOversizedRequestFailsTheStepNotTheStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const limit = 64 << 10
	f := startLimitedFakeExecutor(t, "exec-small", 2, limit, "work")
	f.register(h)
	h.apply(oneStepTemplate)
	h.apply(`
namespace: test
name: feeds_large
version: 1.0.0
steps:
  - name: produce
    handler: work
  - name: consume
    handler: work
    depends_on: [produce]
`)
	bystander := h.create("test", "one_step", map[string]any{})
	other := f.next()
	require.Equal(t, bystander.GetId(), other.GetTaskId())

	task := h.create("test", "feeds_large", map[string]any{})
	produce := f.next()
	big := fmt.Sprintf(`{"blob":%q}`, strings.Repeat("y", 100<<10))
	f.send(&executorv1.ExecuteResponse{Kind: &executorv1.ExecuteResponse_StepResult{StepResult: &executorv1.StepResult{
		TaskId: produce.GetTaskId(), StepId: produce.GetStepId(), Attempt: produce.GetAttempt(), ExecutorId: "exec-small",
		Outcome: &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{Results: []byte(big)}},
	}}})
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	consume := step(failed, "consume")
	require.Equal(t, coordinatorv1.State_STATE_ERROR, consume.GetState())
	require.EqualValues(t, 0, consume.GetAttempts(), "never sent")
	last := consume.GetTransitions()[len(consume.GetTransitions())-1]
	require.Contains(t, last.GetReason(), "over the 64.0 KiB that executor accepts")
	require.Contains(t, last.GetReason(), "results of produce 100.0 KiB")
	require.Contains(t, last.GetReason(), "not retried")

	// The bystander's attempt is still in flight on the same stream.
	f.send(succeed(other, "exec-small"))
	done := h.waitState(bystander.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 1, step(done, "work").GetAttempts(), "the stream was not broken")
}
