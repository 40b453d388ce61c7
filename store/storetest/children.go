package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// children covers the columns that link a child task to its parent
// (migration 00021): written by TaskCreate, read back by every read of a
// task, and kept by a repeated create that finds the child by its
// identity key.
func (s *suite) children(t *testing.T) {
	t.Run("ChildTask", func(t *testing.T) {
		t.Parallel()

		t.Run("ParentColumnsRoundTripThroughEveryRead", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			parent, steps := f.createTask(t, "call_child")
			p := f.taskParams("child", "only")
			p.Task.ParentTaskID, p.Task.ParentStepID = parent.ID, steps[0].ID
			got := f.create(t, p)
			require.Equal(t, parent.ID, got.ParentTaskID)
			require.Equal(t, steps[0].ID, got.ParentStepID)
			requireTask(t, p.Task, f.task(t, p.Task.ID))

			listed, err := f.store.TaskList(f.ctx, &store.TaskListParams{Namespace: f.ns, Name: "child"})
			require.NoError(t, err)
			require.Len(t, listed, 1)
			require.Equal(t, parent.ID, listed[0].ParentTaskID)
			require.Equal(t, steps[0].ID, listed[0].ParentStepID)

			l := f.acquire(t, "a")
			taken := f.take(t, l, p.Task.ID, f.now())
			require.Equal(t, parent.ID, taken.ParentTaskID)
			require.Equal(t, steps[0].ID, taken.ParentStepID)

			snap, err := f.store.TaskSnapshot(f.ctx, p.Task.ID)
			require.NoError(t, err)
			require.Equal(t, parent.ID, snap.Task.ParentTaskID)

			// A task that is no child reads with both empty.
			require.Empty(t, f.task(t, parent.ID).ParentTaskID)
			require.Empty(t, f.task(t, parent.ID).ParentStepID)
		})

		t.Run("RepeatedCreateFindsTheChild", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			parent, steps := f.createTask(t, "call_child")
			p := f.taskParams("child", "only")
			p.Task.ParentTaskID, p.Task.ParentStepID = parent.ID, steps[0].ID
			p.Task.IdentityKey = "child:" + parent.ID + "/" + steps[0].ID + "/0/1"
			first := f.create(t, p)

			again := f.taskParams("child", "only")
			again.Task.ParentTaskID, again.Task.ParentStepID = parent.ID, steps[0].ID
			again.Task.IdentityKey = p.Task.IdentityKey
			got, created, err := f.store.TaskCreate(f.ctx, again)
			require.NoError(t, err)
			require.False(t, created, "the identity key finds the child stored first")
			require.Equal(t, first.ID, got.ID)
			require.Equal(t, parent.ID, got.ParentTaskID)
			require.Equal(t, steps[0].ID, got.ParentStepID)
			_, err = f.store.TaskGet(f.ctx, again.Task.ID)
			require.ErrorIs(t, err, store.ErrNotFound, "no second child")
			require.Equal(t, state.Pending, f.task(t, first.ID).State)
		})
	})
}
