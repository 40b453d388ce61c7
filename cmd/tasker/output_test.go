package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

func ts(t *testing.T, s string) *timestamppb.Timestamp {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return timestamppb.New(tm)
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

func mustValue(t *testing.T, v any) *structpb.Value {
	t.Helper()
	val, err := structpb.NewValue(v)
	require.NoError(t, err)
	return val
}

// fixtureTask is an in-progress task whose steps cover every shape the JSON
// output must handle: results or none, an error or none, a first transition
// without a from state, no transitions, no parents.
func fixtureTask(t *testing.T) *coordinatorv1.Task {
	t.Helper()
	const (
		p  = coordinatorv1.State_STATE_PENDING
		ip = coordinatorv1.State_STATE_IN_PROGRESS
	)
	tr := func(from, to coordinatorv1.State, at, reason string) *coordinatorv1.Transition {
		return &coordinatorv1.Transition{TaskId: "t-1", FromState: from, ToState: to, At: ts(t, at), Reason: reason, Attempt: 1}
	}
	return &coordinatorv1.Task{
		Id:        "t-1",
		Namespace: "demo",
		Name:      "order_fulfillment",
		Version:   "1.0.0",
		State:     ip,
		Context:   mustStruct(t, map[string]any{"order_id": "A1", "qty": 2}),
		CreatedAt: ts(t, "2026-01-02T03:04:05.123456789Z"),
		UpdatedAt: ts(t, "2026-01-02T03:04:06Z"),
		Steps: []*coordinatorv1.Step{
			{
				Name: "validate", Handler: "echo", State: coordinatorv1.State_STATE_COMPLETE, Attempts: 1, MaxAttempts: 3,
				Results: mustValue(t, map[string]any{"ok": true}),
				Transitions: []*coordinatorv1.Transition{
					tr(coordinatorv1.State_STATE_UNSPECIFIED, p, "2026-01-02T03:04:05.123456789Z", "created"),
					tr(p, ip, "2026-01-02T03:04:05.2Z", "dispatched"),
					tr(ip, coordinatorv1.State_STATE_COMPLETE, "2026-01-02T03:04:05.300000001Z", "done"),
				},
			},
			{
				Name: "charge", Handler: "flaky", DependsOn: []string{"validate"}, State: coordinatorv1.State_STATE_ERROR, Attempts: 1, MaxAttempts: 3,
				Error:   &coordinatorv1.StepError{Message: "card <declined> & retry", ErrorClass: "CardError", Retryable: true},
				Waiting: &coordinatorv1.Waiting{Reason: "backoff", Until: ts(t, "2026-01-02T03:04:07Z")},
				Transitions: []*coordinatorv1.Transition{
					tr(p, ip, "2026-01-02T03:04:05.4Z", "dispatched"),
					tr(ip, coordinatorv1.State_STATE_ERROR, "2026-01-02T03:04:05.5Z", "failed"),
				},
			},
			{
				Name: "reserve", Handler: "sleep", DependsOn: []string{"validate"}, State: coordinatorv1.State_STATE_RESOLVED_MANUALLY,
				Results: mustValue(t, "by hand"),
				Transitions: []*coordinatorv1.Transition{
					tr(p, coordinatorv1.State_STATE_RESOLVED_MANUALLY, "2026-01-02T03:04:05.6Z", "operator"),
				},
			},
			{Name: "ship", Handler: "noop", DependsOn: []string{"charge", "reserve"}, State: p,
				Waiting: &coordinatorv1.Waiting{Reason: "parents", On: []string{"charge"}}},
		},
	}
}

// fixtureTaskJSON is the -o json form of fixtureTask, field order included.
const fixtureTaskJSON = `{
  "id": "t-1",
  "namespace": "demo",
  "name": "order_fulfillment",
  "version": "1.0.0",
  "state": "in_progress",
  "context": {"order_id": "A1", "qty": 2},
  "created_at": "2026-01-02T03:04:05.123456789Z",
  "completed_at": null,
  "steps": [
    {"name": "validate", "handler": "echo", "depends_on": [], "state": "complete", "attempts": 1,
     "results": {"ok": true}, "error": null,
     "transitions": [
       {"from": null, "to": "pending", "at": "2026-01-02T03:04:05.123456789Z", "reason": "created"},
       {"from": "pending", "to": "in_progress", "at": "2026-01-02T03:04:05.2Z", "reason": "dispatched"},
       {"from": "in_progress", "to": "complete", "at": "2026-01-02T03:04:05.300000001Z", "reason": "done"}]},
    {"name": "charge", "handler": "flaky", "depends_on": ["validate"], "state": "error", "attempts": 1,
     "results": null, "error": {"message": "card <declined> & retry", "class": "CardError", "retryable": true},
     "transitions": [
       {"from": "pending", "to": "in_progress", "at": "2026-01-02T03:04:05.4Z", "reason": "dispatched"},
       {"from": "in_progress", "to": "error", "at": "2026-01-02T03:04:05.5Z", "reason": "failed"}],
     "waiting": {"reason": "backoff", "until": "2026-01-02T03:04:07Z"}},
    {"name": "reserve", "handler": "sleep", "depends_on": ["validate"], "state": "resolved_manually", "attempts": 0,
     "results": "by hand", "error": null,
     "transitions": [
       {"from": "pending", "to": "resolved_manually", "at": "2026-01-02T03:04:05.6Z", "reason": "operator"}]},
    {"name": "ship", "handler": "noop", "depends_on": ["charge", "reserve"], "state": "pending", "attempts": 0,
     "results": null, "error": null, "transitions": [], "waiting": {"reason": "parents", "on": ["charge"]}}
  ]
}`

func compactJSON(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, []byte(s)))
	return b.String()
}

func TestTaskJSONShape(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	require.NoError(t, writeTask(&b, true, fixtureTask(t)))
	require.Equal(t, compactJSON(t, fixtureTaskJSON)+"\n", b.String())
}

func TestTaskJSONCompletedAt(t *testing.T) {
	t.Parallel()
	task := &coordinatorv1.Task{
		Id: "t-2", State: coordinatorv1.State_STATE_COMPLETE,
		CreatedAt:   ts(t, "2026-01-02T03:04:05Z"),
		CompletedAt: ts(t, "2026-01-02T03:04:07.000000009Z"),
	}
	var b bytes.Buffer
	require.NoError(t, writeTask(&b, true, task))
	want := `{"id":"t-2","namespace":"","name":"","version":"","state":"complete","context":{},` +
		`"created_at":"2026-01-02T03:04:05Z","completed_at":"2026-01-02T03:04:07.000000009Z","steps":[]}` + "\n"
	require.Equal(t, want, b.String())
}

func TestTaskHumanOutput(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	require.NoError(t, writeTask(&b, false, fixtureTask(t)))
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, lines, 6, b.String())
	require.Equal(t, "task t-1  demo/order_fulfillment@1.0.0  in_progress  steps 2/4  created 2026-01-02T03:04:05Z", lines[0])
	require.Equal(t, []string{"STEP", "STATE", "ATTEMPTS", "HANDLER", "WAITING", "ERROR"}, strings.Fields(lines[1]))
	require.Equal(t, []string{"validate", "complete", "1/3", "echo"}, strings.Fields(lines[2]))
	require.Equal(t, []string{"charge", "error", "1/3", "flaky", "backoff", "until", "2026-01-02T03:04:07Z", "card", "<declined>", "&", "retry"}, strings.Fields(lines[3]))
	require.Equal(t, []string{"ship", "pending", "0", "noop", "parents:", "charge"}, strings.Fields(lines[5]))
}

// A child step names its child, and a child names its parent, in both
// outputs; tasks without either print as before (the tests above).
func TestTaskOutputChildLinks(t *testing.T) {
	t.Parallel()
	parent := &coordinatorv1.Task{
		Id: "p-1", Namespace: "shop", Name: "order", Version: "1.0.0", State: coordinatorv1.State_STATE_IN_PROGRESS,
		CreatedAt: ts(t, "2026-01-02T03:04:05Z"),
		Steps: []*coordinatorv1.Step{{
			Id: "s-1", Name: "charge", State: coordinatorv1.State_STATE_IN_PROGRESS, Attempts: 1, MaxAttempts: 3,
			ChildTaskId: "c-1", Waiting: &coordinatorv1.Waiting{Reason: "child_task", Key: "billing/charge"},
		}},
	}
	child := &coordinatorv1.Task{
		Id: "c-1", Namespace: "billing", Name: "charge", Version: "2.0.0", State: coordinatorv1.State_STATE_IN_PROGRESS,
		CreatedAt: ts(t, "2026-01-02T03:04:06Z"), ParentTaskId: "p-1", ParentStepId: "s-1", ParentStep: "charge",
	}

	var b bytes.Buffer
	require.NoError(t, writeTask(&b, false, parent))
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Equal(t, []string{"charge", "in_progress", "1/3", "child", "task", "c-1", "child_task:", "billing/charge"}, strings.Fields(lines[2]))
	b.Reset()
	require.NoError(t, writeTask(&b, false, child))
	require.Equal(t, "task c-1  billing/charge@2.0.0  in_progress  steps 0/0  created 2026-01-02T03:04:06Z  child of p-1 step charge\n", b.String())

	b.Reset()
	require.NoError(t, writeTask(&b, true, parent))
	var got map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &got))
	require.Equal(t, "c-1", got["steps"].([]any)[0].(map[string]any)["child_task_id"])
	require.NotContains(t, got, "parent_task_id", "omitted for a task that is no child")
	b.Reset()
	require.NoError(t, writeTask(&b, true, child))
	require.NoError(t, json.Unmarshal(b.Bytes(), &got))
	require.Equal(t, "p-1", got["parent_task_id"])
	require.Equal(t, "s-1", got["parent_step_id"])
	require.Equal(t, "charge", got["parent_step"])
}
