package coordinator_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// A create asking for TASK_VIEW_BASIC gets the task's own fields, as the
// full view has them, without its context, steps and transitions; the
// warnings are the same, and so is what is stored.
func TestCreateTaskBasicView(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply("namespace: demo\nname: pay\nversion: 1.0.0\nsteps:\n" +
		"  - {name: validate, handler: noop}\n" +
		"  - {name: charge, handler: charge_card, depends_on: [validate]}\n")
	ctxOf := func(n float64) *structpb.Struct {
		s, err := structpb.NewStruct(map[string]any{"n": n})
		require.NoError(t, err)
		return s
	}

	basic, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{
		Namespace: "demo", Name: "pay", Context: ctxOf(1), View: coordinatorv1.TaskView_TASK_VIEW_BASIC,
	})
	require.NoError(t, err)
	require.True(t, basic.GetCreated())
	task := basic.GetTask()
	require.NotEmpty(t, task.GetId())
	require.Equal(t, "demo", task.GetNamespace())
	require.Equal(t, "pay", task.GetName())
	require.Equal(t, "1.0.0", task.GetVersion())
	require.NotNil(t, task.GetCreatedAt())
	require.NotZero(t, task.GetPriority())
	require.Nil(t, task.GetContext())
	require.Empty(t, task.GetSteps())
	require.Empty(t, task.GetTransitions())
	require.Len(t, basic.GetWarnings(), 2, "no executor hosts noop or charge_card: %v", basic.GetWarnings())

	// The same create in the full view finds the same task: its own fields
	// are the basic view's, and the rest is there too.
	for _, view := range []coordinatorv1.TaskView{coordinatorv1.TaskView_TASK_VIEW_UNSPECIFIED, coordinatorv1.TaskView_TASK_VIEW_FULL} {
		full, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{
			Namespace: "demo", Name: "pay", Context: ctxOf(1), View: view,
		})
		require.NoError(t, err, view)
		require.False(t, full.GetCreated(), view)
		require.Equal(t, basic.GetWarnings(), full.GetWarnings(), view)
		require.Len(t, full.GetTask().GetSteps(), 2, view)
		require.True(t, proto.Equal(ctxOf(1), full.GetTask().GetContext()), view)
		own := proto.Clone(full.GetTask()).(*coordinatorv1.Task)
		own.Context, own.Steps, own.Transitions = nil, nil, nil
		require.True(t, proto.Equal(task, own), "%v: basic %v, full without context, steps, transitions %v", view, task, own)
	}

	// A view this coordinator does not know is refused, and nothing is
	// created.
	_, err = h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{
		Namespace: "demo", Name: "pay", Context: ctxOf(2), View: coordinatorv1.TaskView(7),
	})
	require.Equal(t, codes.InvalidArgument, status.Code(err), err)
	require.ErrorContains(t, err, "view: unknown value 7")
	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{Namespace: "demo"})
	require.NoError(t, err)
	require.Len(t, list.GetTasks(), 1)
}
