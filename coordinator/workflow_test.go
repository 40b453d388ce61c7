package coordinator_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/examples/templates"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// TestReferenceShapes runs Tasker's five workflow shapes through a real
// coordinator and executor over TCP, and checks from the stored transitions
// that dependencies held and parallel branches really ran in parallel.
func TestReferenceShapes(t *testing.T) {
	t.Parallel()
	files, err := templates.All()
	require.NoError(t, err)
	cases := []struct {
		file     string
		name     string
		steps    int
		parallel [][]string
	}{
		{"linear_workflow.yaml", "linear_workflow", 6, nil},
		{"diamond_workflow.yaml", "diamond_workflow", 7, [][]string{{"branch_one_process", "branch_two_process"}}},
		{"tree_workflow.yaml", "tree_workflow", 8, [][]string{{"branch_a_setup", "branch_b_setup"}}},
		{"parallel_merge_workflow.yaml", "parallel_merge_workflow", 7, [][]string{{"fetch_user", "fetch_order", "fetch_inventory", "fetch_pricing"}}},
		{"mixed_workflow.yaml", "mixed_workflow", 8, [][]string{{"init_auth", "init_config"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.startExecutor(8, nil)
			h.apply(string(files[tc.file]))
			task := h.create("tasker", tc.name, map[string]any{"run": tc.name})
			done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)

			require.Len(t, done.GetSteps(), tc.steps)
			require.NotNil(t, done.GetCompletedAt())
			for _, s := range done.GetSteps() {
				require.Equal(t, coordinatorv1.State_STATE_COMPLETE, s.GetState(), s.GetName())
				require.EqualValues(t, 1, s.GetAttempts(), s.GetName())
				require.NotNil(t, s.GetResults(), s.GetName())
			}
			requireParentsFirst(t, done)
			for _, group := range tc.parallel {
				requireOverlap(t, done, group...)
			}
			// Parents' results reach children: echo reports them.
			for _, s := range done.GetSteps() {
				if s.GetHandler() != "echo" || len(s.GetDependsOn()) == 0 {
					continue
				}
				raw, err := s.GetResults().MarshalJSON()
				require.NoError(t, err)
				var echoed struct {
					Parents map[string]json.RawMessage `json:"parents"`
					Context map[string]any             `json:"context"`
				}
				require.NoError(t, json.Unmarshal(raw, &echoed))
				require.Len(t, echoed.Parents, len(s.GetDependsOn()), s.GetName())
				require.Equal(t, tc.name, echoed.Context["run"])
			}
		})
	}
}

// TestWatchReplaysTaskStatePerTransition watches a finished task from the
// start: every message carries the task's state as of its transition, and
// the stream ends after the task's terminal transition.
func TestWatchReplaysTaskStatePerTransition(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(4, nil)
	files, err := templates.All()
	require.NoError(t, err)
	h.apply(string(files["linear_workflow.yaml"]))
	task := h.create("tasker", "linear_workflow", map[string]any{})
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)

	stream, err := h.client.WatchTask(h.ctx, &coordinatorv1.WatchTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	var msgs []*coordinatorv1.WatchTaskResponse
	for {
		m, err := stream.Recv()
		if err != nil {
			break
		}
		msgs = append(msgs, m)
	}
	require.NotEmpty(t, msgs)
	first, last := msgs[0], msgs[len(msgs)-1]
	require.Equal(t, coordinatorv1.State_STATE_PENDING, first.GetTaskState(), "the first step started while the task was still pending in the stored order")
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, last.GetTaskState())
	require.Empty(t, last.GetTransition().GetStepName(), "the last message is the task's own transition")
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, last.GetTransition().GetToState())
	for i := 1; i < len(msgs); i++ {
		require.Greater(t, msgs[i].GetTransition().GetSeq(), msgs[i-1].GetTransition().GetSeq())
	}
}
