package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// TestExecutorRestartWithinGrace pins down one fault TestChaos hits by
// chance: an executor is killed while it runs a step and comes back, with
// the same id, before the executor grace period ends. The new process knows
// nothing of the old one's attempt, so the coordinator must fail that
// attempt and run it again rather than wait for a result that can never
// come.
func TestExecutorRestartWithinGrace(t *testing.T) {
	t.Parallel()
	coordAddr := freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coordAddr, "--db", filepath.Join(t.TempDir(), "tasker.db"),
		"--executor-grace", "1s", "--log-level", "debug")
	execArgs := []string{"executor", "--listen", freeAddr(t), "--coordinator", coordAddr, "--id", "exec-1", "--capacity", "4", "--log-level", "debug"}
	ex := start(t, "exec-1-run1", execArgs...)

	conn, err := grpc.NewClient(coordAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	client := coordinatorv1.NewCoordinatorServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.Eventually(t, func() bool {
		resp, err := client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
		return err == nil && len(resp.GetExecutors()) == 1 && resp.GetExecutors()[0].GetConnected()
	}, 30*time.Second, 50*time.Millisecond, "executor did not connect")

	tmpl := &template.Template{
		Namespace: "chaos", Name: "restart", Version: "1.0.0",
		Steps: []template.Step{
			{Name: "long", Handler: "sleep", Config: []byte(`{"ms":1500}`), RetryLimit: chaosRetryLimit, Backoff: chaosBackoff()},
			{Name: "after", Handler: "noop", DependsOn: []string{"long"}, RetryLimit: chaosRetryLimit, Backoff: chaosBackoff()},
		},
	}
	pb, err := templatepb.ToProto(tmpl)
	require.NoError(t, err)
	_, err = client.RegisterTemplate(ctx, &coordinatorv1.RegisterTemplateRequest{Template: pb})
	require.NoError(t, err)
	created, err := client.CreateTask(ctx, &coordinatorv1.CreateTaskRequest{Namespace: "chaos", Name: "restart", IdempotencyKey: "restart-1"})
	require.NoError(t, err)
	id := created.GetTask().GetId()

	getTask := func() *coordinatorv1.Task {
		resp, err := client.GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: id})
		require.NoError(t, err)
		return resp.GetTask()
	}
	require.Eventually(t, func() bool {
		return getTask().GetSteps()[0].GetState() == coordinatorv1.State_STATE_IN_PROGRESS
	}, 30*time.Second, 20*time.Millisecond, "the long step never started")

	ex.kill()
	start(t, "exec-1-run2", execArgs...)

	// One grace period, the retry's 1.5s sleep and a wide margin.
	deadline := time.Now().Add(30 * time.Second)
	for getTask().GetState() != coordinatorv1.State_STATE_COMPLETE && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	task := getTask()
	if task.GetState() != coordinatorv1.State_STATE_COMPLETE {
		for _, s := range task.GetSteps() {
			t.Logf("step %s state=%s attempts=%d", s.GetName(), s.GetState(), s.GetAttempts())
			for _, tr := range s.GetTransitions() {
				t.Logf("  seq=%d %s->%s attempt=%d %q", tr.GetSeq(), tr.GetFromState(), tr.GetToState(), tr.GetAttempt(), tr.GetReason())
			}
		}
		if resp, err := client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{}); err == nil {
			for _, e := range resp.GetExecutors() {
				t.Logf("executor %s connected=%v in_flight=%d", e.GetId(), e.GetConnected(), e.GetInFlight())
			}
		}
	}
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, task.GetState(),
		"the attempt the killed executor ran must be failed and retried, not awaited forever")
	long := task.GetSteps()[0]
	require.Equal(t, int32(2), long.GetAttempts(), "attempt 1 died with the executor; attempt 2 ran on its successor")
	require.Contains(t, fmt.Sprint(long.GetTransitions()), "attempt 1")
}
