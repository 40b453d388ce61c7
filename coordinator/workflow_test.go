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
