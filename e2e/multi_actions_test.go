//go:build unix

package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// multiActionsTemplates: one holds a step running, the other fails its
// first attempt for good and succeeds on the next.
var multiActionsTemplates = []string{`
namespace: tasker
name: operator_cancel
version: 1.0.0
steps:
  - name: long
    handler: sleep
    config: {ms: 600000}
`, `
namespace: tasker
name: operator_fix
version: 1.0.0
steps:
  - name: boom
    handler: flaky
    config: {fail_times: 1, permanent: true}
  - name: after
    handler: noop
    depends_on: [boom]
`}

// multiOperatorActions sends every operator action to a coordinator that
// does not own the task: behind a load balancer, most calls land so. The
// owner may be alive (the call is forwarded to it) or dead (the receiver
// takes the task over); either way the call must work, and the task end
// where the action sends it.
func multiOperatorActions(ctx context.Context, t *testing.T, owner, other *multiCoordinator, orphan string) {
	t.Helper()
	for _, y := range multiActionsTemplates {
		tmpl, err := template.Parse([]byte(y))
		require.NoError(t, err)
		pb, err := templatepb.ToProto(tmpl)
		require.NoError(t, err)
		_, err = owner.client.RegisterTemplate(ctx, &coordinatorv1.RegisterTemplateRequest{Template: pb})
		require.NoError(t, err)
	}
	create := func(name, key string) string {
		c, err := structpb.NewStruct(map[string]any{"key": key})
		require.NoError(t, err)
		resp, err := owner.client.CreateTask(ctx, &coordinatorv1.CreateTaskRequest{
			Namespace: "tasker", Name: name, Context: c, IdempotencyKey: "actions-" + key,
		})
		require.NoError(t, err)
		return resp.GetTask().GetId()
	}
	// call retries an action while ownership is settling (a lease about
	// to be taken over answers Unavailable); any other error is final.
	call := func(what string, fn func() error) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if err = fn(); status.Code(err) != codes.Unavailable {
				break
			}
		}
		require.NoError(t, err, what)
	}
	state := func(id string) (*coordinatorv1.Task, error) {
		resp, err := other.client.GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: id})
		return resp.GetTask(), err
	}
	waitState := func(id string, want coordinatorv1.State, what string) {
		t.Helper()
		require.Eventually(t, func() bool {
			task, err := state(id)
			return err == nil && task.GetState() == want
		}, 60*time.Second, 50*time.Millisecond, what)
	}
	stepState := func(task *coordinatorv1.Task, name string) coordinatorv1.State {
		for _, s := range task.GetSteps() {
			if s.GetName() == name {
				return s.GetState()
			}
		}
		return coordinatorv1.State_STATE_UNSPECIFIED
	}

	// Running on its live owner, cancelled through the other coordinator:
	// long's handler is told through the owner's executor stream.
	running := create("operator_cancel", "cancel")
	require.Eventually(t, func() bool {
		task, err := state(running)
		return err == nil && stepState(task, "long") == coordinatorv1.State_STATE_IN_PROGRESS
	}, 60*time.Second, 50*time.Millisecond, "long never started")
	call("cancel a running task through a coordinator that does not own it", func() error {
		_, err := other.client.CancelTask(ctx, &coordinatorv1.CancelTaskRequest{Id: running, Reason: "e2e"})
		return err
	})
	waitState(running, coordinatorv1.State_STATE_CANCELLED, "cancelled")

	// Failed on its live owner: resolved through the other coordinator,
	// or retried through it.
	failed := create("operator_fix", "resolve")
	waitState(failed, coordinatorv1.State_STATE_ERROR, "boom fails for good")
	call("resolve a step through a coordinator that does not own the task", func() error {
		_, err := other.client.ResolveStep(ctx, &coordinatorv1.ResolveStepRequest{TaskId: failed, StepName: "boom"})
		return err
	})
	waitState(failed, coordinatorv1.State_STATE_COMPLETE, "resolved task completes")

	retried := create("operator_fix", "retry")
	waitState(retried, coordinatorv1.State_STATE_ERROR, "boom fails for good")
	call("retry a task through a coordinator that does not own it", func() error {
		_, err := other.client.RetryTask(ctx, &coordinatorv1.RetryTaskRequest{Id: retried})
		return err
	})
	waitState(retried, coordinatorv1.State_STATE_COMPLETE, "boom's second attempt succeeds and after runs")

	// A task the killed coordinator created finished under a survivor or
	// still names the dead lease; cancelling it through the other
	// coordinator works either way.
	call("cancel a finished task of the killed coordinator", func() error {
		resp, err := other.client.CancelTask(ctx, &coordinatorv1.CancelTaskRequest{Id: orphan})
		if err == nil && resp.GetTask().GetState() != coordinatorv1.State_STATE_CANCELLED {
			return errors.New("answered with state " + resp.GetTask().GetState().String())
		}
		return err
	})
}
