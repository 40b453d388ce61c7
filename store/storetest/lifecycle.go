package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

func (s *suite) lifecycle(t *testing.T) {
	t.Run("Close", func(t *testing.T) {
		t.Parallel()

		t.Run("LaterCallsFailWithErrClosed", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			require.NoError(t, f.store.Close())

			_, _, err := f.store.TaskCreate(f.ctx, f.taskParams("linear", "a"))
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: task.ID, Steps: []*store.StepChange{startStep(steps[0])}, At: f.now(),
			})
			require.ErrorIs(t, err, store.ErrClosed)
			_, _, err = f.store.TemplateRegister(f.ctx, f.templateParams("t", "1.0.0", "d"))
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskGet(f.ctx, task.ID)
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskList(f.ctx, &store.TaskListParams{State: state.Pending})
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.StepList(f.ctx, task.ID)
			require.ErrorIs(t, err, store.ErrClosed)
			lease := &store.Lease{CoordinatorID: "a", Token: 1, Expires: f.now().Add(leaseTTL)}
			_, err = f.store.TaskTake(f.ctx, &store.TaskTakeParams{Lease: lease, TaskID: task.ID, Now: f.now()})
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskClaim(f.ctx, &store.TaskClaimParams{Lease: lease, Now: f.now()})
			require.ErrorIs(t, err, store.ErrClosed)
		})
	})
}
