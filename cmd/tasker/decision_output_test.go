package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// A step on a branch not taken shows as skipped, in the table and in JSON,
// and counts as done in a task's progress.
func TestSkippedStepOutput(t *testing.T) {
	t.Parallel()
	task := &coordinatorv1.Task{
		Id: "t-2", Namespace: "demo", Name: "shipping", Version: "1.0.0",
		State:     coordinatorv1.State_STATE_COMPLETE,
		CreatedAt: ts(t, "2026-01-02T03:04:05Z"),
		Steps: []*coordinatorv1.Step{
			{Name: "route", Handler: "route", State: coordinatorv1.State_STATE_COMPLETE, Attempts: 1, MaxAttempts: 3},
			{Name: "customs", Handler: "noop", DependsOn: []string{"route"}, State: coordinatorv1.State_STATE_SKIPPED, MaxAttempts: 3,
				Transitions: []*coordinatorv1.Transition{{
					TaskId: "t-2", StepName: "customs", FromState: coordinatorv1.State_STATE_PENDING, ToState: coordinatorv1.State_STATE_SKIPPED,
					At: ts(t, "2026-01-02T03:04:06Z"), Reason: "not taken: not chosen by decision step route",
				}}},
			{Name: "ship", Handler: "noop", DependsOn: []string{"route", "customs"}, State: coordinatorv1.State_STATE_COMPLETE, Attempts: 1, MaxAttempts: 3},
		},
	}
	var b bytes.Buffer
	require.NoError(t, writeTask(&b, false, task))
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Equal(t, "task t-2  demo/shipping@1.0.0  complete  steps 3/3  created 2026-01-02T03:04:05Z", lines[0])
	require.Equal(t, []string{"customs", "skipped", "0/3", "noop"}, strings.Fields(lines[3]))

	b.Reset()
	require.NoError(t, writeTask(&b, true, task))
	var out struct {
		Steps []struct {
			Name        string `json:"name"`
			State       string `json:"state"`
			Transitions []struct {
				From, To, Reason string
			} `json:"transitions"`
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &out))
	require.Equal(t, "skipped", out.Steps[1].State)
	require.Equal(t, "pending", out.Steps[1].Transitions[0].From)
	require.Equal(t, "skipped", out.Steps[1].Transitions[0].To)

	b.Reset()
	require.NoError(t, writeTransition(&b, task.Steps[1].Transitions[0]))
	require.Contains(t, b.String(), "customs               pending → skipped  attempt 0  not taken: not chosen by decision step route")
}
