package coordinator_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

func stepT(name, handler string, deps ...string) *coordinatorv1.StepTemplate {
	return &coordinatorv1.StepTemplate{Name: name, Handler: handler, DependsOn: deps}
}

func TestBadTemplatesRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tmpl := func(version string, steps ...*coordinatorv1.StepTemplate) *coordinatorv1.TaskTemplate {
		return &coordinatorv1.TaskTemplate{Namespace: "bad", Name: "t", Version: version, Steps: steps}
	}
	cases := []struct {
		name string
		tmpl *coordinatorv1.TaskTemplate
		want []string
	}{
		{"cycle with its path", tmpl("1.0.0", stepT("a", "noop", "c"), stepT("b", "noop", "a"), stepT("c", "noop", "b")), []string{"cycle", "a -> ", "-> a"}},
		{"self dependency", tmpl("1.0.0", stepT("a", "noop", "a")), []string{`"a"`}},
		{"unknown dependency", tmpl("1.0.0", stepT("a", "noop"), stepT("b", "noop", "ghost")), []string{`"b"`, `"ghost"`}},
		{"duplicate step name", tmpl("1.0.0", stepT("a", "noop"), stepT("a", "echo")), []string{`"a"`, "duplicate"}},
		{"empty DAG", tmpl("1.0.0"), []string{"step"}},
		{"bad version", tmpl("one", stepT("a", "noop")), []string{"version", `"one"`}},
		{"missing handler", tmpl("1.0.0", stepT("a", "")), []string{`"a"`, "handler"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: tc.tmpl})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			msg := status.Convert(err).Message()
			for _, w := range tc.want {
				require.Contains(t, msg, w)
			}
		})
	}
	_, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))

	list, err := h.client.ListTemplates(h.ctx, &coordinatorv1.ListTemplatesRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetTemplates(), "refused templates are not stored")
}

func TestTemplateVersionsAreImmutable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	base := &coordinatorv1.TaskTemplate{Namespace: "ns", Name: "t", Version: "1.0.0", Steps: []*coordinatorv1.StepTemplate{stepT("a", "noop")}}
	resp, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: base})
	require.NoError(t, err)
	require.True(t, resp.GetCreated())
	resp, err = h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: base})
	require.NoError(t, err)
	require.False(t, resp.GetCreated(), "identical re-registration is a no-op")

	changed := &coordinatorv1.TaskTemplate{Namespace: "ns", Name: "t", Version: "1.0.0", Steps: []*coordinatorv1.StepTemplate{stepT("a", "echo")}}
	_, err = h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: changed})
	require.Equal(t, codes.AlreadyExists, status.Code(err))

	// A newer version does not change a task pinned to the old one.
	task := h.create("ns", "t", map[string]any{})
	require.Equal(t, "1.0.0", task.GetVersion())
	changed.Version = "1.1.0"
	_, err = h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: changed})
	require.NoError(t, err)
	require.Equal(t, "noop", step(h.get(task.GetId()), "a").GetHandler())
	latest, err := h.client.GetTemplate(h.ctx, &coordinatorv1.GetTemplateRequest{Namespace: "ns", Name: "t"})
	require.NoError(t, err)
	require.Equal(t, "1.1.0", latest.GetTemplate().GetVersion())
	newer := h.create("ns", "t", map[string]any{"n": 2})
	require.Equal(t, "1.1.0", newer.GetVersion())
	require.Equal(t, "echo", step(newer, "a").GetHandler())
}

func TestBadContextsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(`
namespace: demo
name: order
version: 1.0.0
context_schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  - name: validate
    handler: echo
`)
	mk := func(m map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(m)
		require.NoError(t, err)
		return s
	}
	cases := []struct {
		name string
		req  *coordinatorv1.CreateTaskRequest
		code codes.Code
		want string
	}{
		{"missing required field", &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "order", Context: mk(map[string]any{})}, codes.InvalidArgument, "order_id"},
		{"wrong type", &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "order", Context: mk(map[string]any{"order_id": 7})}, codes.InvalidArgument, "order_id"},
		{"unknown template", &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "nope"}, codes.NotFound, "demo/nope"},
		{"unknown version", &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "order", Version: "9.9.9"}, codes.NotFound, "9.9.9"},
		{"missing name", &coordinatorv1.CreateTaskRequest{Namespace: "demo"}, codes.InvalidArgument, "name"},
		{"context too large", &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "order", Context: mk(map[string]any{"order_id": strings.Repeat("x", 2<<20)})}, codes.ResourceExhausted, "max_context_bytes"},
		{"unknown bypass step", &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "order", Context: mk(map[string]any{"order_id": "1"}), BypassSteps: []string{"ghost"}}, codes.InvalidArgument, `"ghost"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.client.CreateTask(h.ctx, tc.req)
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			require.Contains(t, status.Convert(err).Message(), tc.want)
		})
	}
	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetTasks(), "refused tasks are not stored")

	_, err = h.client.GetTask(h.ctx, &coordinatorv1.GetTaskRequest{Id: "0192d3c4-0000-7000-8000-000000000000"})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{State: coordinatorv1.State_STATE_SKIPPED})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "a task is never skipped")
	_, err = h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{PageToken: "!!"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	// Valid base64 of something no listing issued: refused, not read as a
	// position that happens to sort after every task (a first page again).
	for _, tok := range []string{"garbage", base64.RawURLEncoding.EncodeToString([]byte("not-a-task-id"))} {
		_, err = h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{PageToken: tok})
		require.Equal(t, codes.InvalidArgument, status.Code(err), tok)
		require.Contains(t, status.Convert(err).Message(), "page_token", tok)
	}
	_, err = h.client.ReportStepResult(h.ctx, &coordinatorv1.ReportStepResultRequest{Result: &executorv1.StepResult{TaskId: "x"}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}
