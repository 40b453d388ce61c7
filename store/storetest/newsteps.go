package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// newSteps checks that TaskAdvance adds steps to a task (a for_each step's
// instances) in the same write as the changes that move them, that they
// read back after the template's steps in position order, and that a
// refused write adds none of them.
func (s *suite) newSteps(t *testing.T) {
	t.Run("NewSteps", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		task, steps := f.createTask(t, "split", "charge", "sum")
		f.advance(t, &store.TaskAdvanceParams{
			TaskID: task.ID, At: f.now(),
			Task:  &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "started"},
			Steps: []*store.StepChange{startStep(steps[0])},
		})
		instance := func(k int) *store.Step {
			return &store.Step{
				ID: uuid.Must(uuid.NewV7()).String(), TaskID: task.ID, Name: fmt.Sprintf("charge[%d]", k),
				Position: 3 + k, Handler: "charge", State: state.Pending, MaxAttempts: 3, Retryable: true,
			}
		}
		added := []*store.Step{instance(0), instance(1), instance(2)}
		f.advance(t, &store.TaskAdvanceParams{
			TaskID: task.ID, At: f.now(), NewSteps: added,
			Steps: []*store.StepChange{
				completeStep(steps[0], 1, `{"items":[1,2,3]}`),
				{StepID: steps[1].ID, StepName: "charge", From: state.Pending, To: state.InProgress, Attempts: 1, Reason: "runs 3 instances"},
				startStep(added[1]),
			},
		})
		got := f.steps(t, task.ID)
		require.Len(t, got, 6)
		var names []string
		for _, st := range got {
			names = append(names, st.Name)
		}
		require.Equal(t, []string{"split", "charge", "sum", "charge[0]", "charge[1]", "charge[2]"}, names)
		require.Equal(t, state.InProgress, got[4].State)
		require.Equal(t, 1, got[4].Attempts)
		require.Equal(t, state.Pending, got[5].State)
		require.Equal(t, 3, got[5].MaxAttempts)
		require.True(t, got[5].Retryable)
		require.Equal(t, "charge", got[5].Handler)

		// A write refused by a stale change adds none of its steps.
		_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
			TaskID: task.ID, At: f.now(), NewSteps: []*store.Step{instance(3)},
			Steps: []*store.StepChange{startStep(steps[0])}, // already complete
		})
		require.True(t, errors.Is(err, store.ErrConflict), "err = %v", err)
		require.Len(t, f.steps(t, task.ID), 6)

		// A name the task has already is refused; so is a step that is not fresh.
		dup := instance(1)
		_, err = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), NewSteps: []*store.Step{dup}})
		require.Error(t, err)
		used := instance(4)
		used.Attempts = 1
		_, err = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), NewSteps: []*store.Step{used}})
		require.ErrorContains(t, err, "must be fresh")
		require.Len(t, f.steps(t, task.ID), 6)
	})
}
