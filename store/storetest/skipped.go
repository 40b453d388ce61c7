package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// skipped checks that a step can be stored in the state skipped (a branch
// a decision step did not take) in the same write as its decision's
// result, and reads back as such with its transition.
func (s *suite) skipped(t *testing.T) {
	t.Run("Skipped", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		task, steps := f.createTask(t, "decide", "left", "right")
		f.advance(t, &store.TaskAdvanceParams{
			TaskID: task.ID, At: f.now(),
			Task:  &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "started"},
			Steps: []*store.StepChange{startStep(steps[0])},
		})
		at := f.now()
		trs := f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: at, Steps: []*store.StepChange{
			completeStep(steps[0], 1, `{"next":["left"]}`),
			{StepID: steps[2].ID, StepName: "right", From: state.Pending, To: state.Skipped, Reason: "not chosen by decision step decide"},
		}})
		require.Len(t, trs, 2)
		require.Equal(t, state.Skipped, trs[1].To)
		require.Equal(t, state.Skipped, f.stepByName(t, task.ID, "right").State)
		require.Equal(t, state.Pending, f.stepByName(t, task.ID, "left").State)

		stored := f.transitions(t, task.ID)
		last := stored[len(stored)-1]
		require.Equal(t, "right", last.StepName)
		require.Equal(t, state.Pending, last.From)
		require.Equal(t, state.Skipped, last.To)
		require.Equal(t, "not chosen by decision step decide", last.Reason)
	})
}
