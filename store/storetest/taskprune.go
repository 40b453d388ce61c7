package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// taskPrune covers TaskPrune: which finished tasks go, with everything
// stored of them, and which stay.
func (s *suite) taskPrune(t *testing.T) {
	t.Run("TaskPrune", func(t *testing.T) {
		t.Parallel()

		t.Run("DeletesOldFinishedTasksWhole", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			finish := func(p *store.TaskCreateParams) {
				for round := range 2 * len(p.Steps) {
					f.runRound(t, p.Task.ID, p.Steps, round)
				}
			}
			// Finished before the cutoff: done (with a signal stored) and
			// cancelled go; failed (error), running, and parent (whose
			// child has not finished) stay.
			done := f.taskParams("linear", "a", "b")
			f.create(t, done)
			require.NoError(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: f.signal(done.Task.ID, "approved", `{"by":"ana"}`)}))
			finish(done)
			cancelled := f.taskParams("linear", "a")
			f.create(t, cancelled)
			f.advance(t, &store.TaskAdvanceParams{TaskID: cancelled.Task.ID, At: f.now(),
				Steps: []*store.StepChange{{StepID: cancelled.Steps[0].ID, StepName: "a", From: state.Pending, To: state.Cancelled, Reason: "cancelled"}},
				Task:  &store.TaskChange{From: state.Pending, To: state.Cancelled, Reason: "cancelled"}})
			failed := f.taskParams("linear", "a")
			f.create(t, failed)
			f.runRound(t, failed.Task.ID, failed.Steps, 0)
			f.advance(t, &store.TaskAdvanceParams{TaskID: failed.Task.ID, At: f.now(),
				Steps: []*store.StepChange{{StepID: failed.Steps[0].ID, StepName: "a", From: state.InProgress, To: state.Error,
					ExpectAttempts: 1, Attempts: 1, Reason: "failed", Error: &store.StepError{Message: "boom"}}},
				Task: &store.TaskChange{From: state.InProgress, To: state.Error, Reason: "failed"}})
			running := f.taskParams("linear", "a")
			f.create(t, running)
			f.runRound(t, running.Task.ID, running.Steps, 0)
			parent := f.taskParams("linear", "a")
			f.create(t, parent)
			child := f.taskParams("child", "only")
			child.Task.ParentTaskID, child.Task.ParentStepID = parent.Task.ID, parent.Steps[0].ID
			f.create(t, child)
			finish(parent)
			cutoff := f.now()
			// Finished after the cutoff: stays.
			late := f.taskParams("linear", "a")
			f.create(t, late)
			finish(late)

			prune := func(limit int) store.TaskPruneResult {
				t.Helper()
				res, err := f.store.TaskPrune(f.ctx, &store.TaskPruneParams{Before: cutoff, Limit: limit})
				require.NoError(t, err)
				return *res
			}
			// While their events are in the log above its floor, nothing
			// goes: a subscriber may still read them.
			require.Equal(t, store.TaskPruneResult{}, prune(0))
			f.requireKept(t, done.Task.ID, cancelled.Task.ID)

			// Once the event log has been pruned past them (on PostgreSQL,
			// once every entry before the cutoff is below the horizon), the
			// two finished tasks go.
			deadline := time.Now().Add(eventWait)
			for {
				res, err := f.store.EventPrune(f.ctx, &store.EventPruneParams{Before: cutoff})
				require.NoError(t, err)
				if !res.More && f.pruneFloorPassed(t, cutoff) {
					break
				}
				require.True(t, time.Now().Before(deadline), "the event floor never passed the cutoff")
			}
			// An ID bound keeps the look to the tasks made before it:
			// done, not cancelled, made after it.
			res, err := f.store.TaskPrune(f.ctx, &store.TaskPruneParams{Before: cutoff, BeforeID: cancelled.Task.ID})
			require.NoError(t, err)
			require.Equal(t, store.TaskPruneResult{Deleted: 1}, *res)
			_, err = f.store.TaskGet(f.ctx, done.Task.ID)
			require.ErrorIs(t, err, store.ErrNotFound)
			f.requireKept(t, cancelled.Task.ID)
			require.Equal(t, store.TaskPruneResult{Deleted: 1, More: true}, prune(1))
			require.Equal(t, store.TaskPruneResult{}, prune(1))

			for _, id := range []string{done.Task.ID, cancelled.Task.ID} {
				_, err := f.store.TaskGet(f.ctx, id)
				require.ErrorIs(t, err, store.ErrNotFound, id)
				steps, err := f.store.StepList(f.ctx, id)
				if err == nil {
					require.Empty(t, steps, id)
				} else {
					require.ErrorIs(t, err, store.ErrNotFound, id)
				}
				require.Empty(t, f.transitions(t, id), id)
				require.Empty(t, f.signals(t, id, false), id)
			}
			f.requireKept(t, failed.Task.ID, running.Task.ID, parent.Task.ID, child.Task.ID, late.Task.ID)
			require.Len(t, f.transitions(t, late.Task.ID), 4, "history newer than the cutoff")

			// The parent goes once its child has finished (and the log
			// has passed the parent's events), and the child after it.
			finish(child)
			// Newer events than the child's: on SQLite the task holding the
			// log's newest one stays (its seq must not be handed out again).
			newer := f.taskParams("linear", "a")
			f.create(t, newer)
			f.runRound(t, newer.Task.ID, newer.Steps, 0)
			later := f.now()
			deadline = time.Now().Add(eventWait)
			for {
				if _, err := f.store.EventPrune(f.ctx, &store.EventPruneParams{Before: later}); err != nil {
					require.NoError(t, err)
				}
				res, err := f.store.TaskPrune(f.ctx, &store.TaskPruneParams{Before: later})
				require.NoError(t, err)
				if _, err := f.store.TaskGet(f.ctx, parent.Task.ID); err != nil {
					require.ErrorIs(t, err, store.ErrNotFound)
					break
				}
				require.True(t, time.Now().Before(deadline), "the parent was never pruned (last batch %+v)", res)
			}
			// The child, finished too, was kept while its parent was; it goes
			// in a later batch.
			f.requireKept(t, child.Task.ID)
			deadline = time.Now().Add(eventWait)
			for {
				_, err := f.store.EventPrune(f.ctx, &store.EventPruneParams{Before: later})
				require.NoError(t, err)
				res, err := f.store.TaskPrune(f.ctx, &store.TaskPruneParams{Before: later})
				require.NoError(t, err)
				if _, err := f.store.TaskGet(f.ctx, child.Task.ID); err != nil {
					require.ErrorIs(t, err, store.ErrNotFound)
					require.Positive(t, res.Deleted)
					break
				}
				require.True(t, time.Now().Before(deadline), "the child was never pruned (last batch %+v)", res)
			}
			f.requireKept(t, failed.Task.ID, running.Task.ID, newer.Task.ID)
		})

		t.Run("RequiresACutoff", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			_, err := f.store.TaskPrune(f.ctx, &store.TaskPruneParams{})
			require.ErrorContains(t, err, "Before")
		})
	})
}

// requireKept checks that each task still reads back with its steps.
func (f *fixture) requireKept(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, err := f.store.TaskGet(f.ctx, id)
		require.NoError(t, err, "task %s should be kept", id)
		steps, err := f.store.StepList(f.ctx, id)
		require.NoError(t, err)
		require.NotEmpty(t, steps, id)
	}
}

// pruneFloorPassed reports whether the event log holds no entry written
// before cutoff that EventPrune would still delete: every entry left before
// the cutoff is a finished task's last one, or belongs to a task not yet
// finished.
func (f *fixture) pruneFloorPassed(t *testing.T, cutoff time.Time) bool {
	t.Helper()
	res, err := f.store.EventPrune(f.ctx, &store.EventPruneParams{Before: cutoff})
	require.NoError(t, err)
	return res.Examined == 0
}
