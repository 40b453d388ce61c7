package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// finished covers the reads analytics makes: a template's tasks that
// finished in a window, and the transitions of many tasks at once.
func (s *suite) finished(t *testing.T) {
	t.Run("TaskListFinished", func(t *testing.T) {
		t.Parallel()

		t.Run("WindowTemplateAndOrder", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			since := f.now()
			// finish creates a task of the template name (and version) and
			// moves it from pending to each state of path in turn, the
			// last at end; it returns the task's ID.
			finish := func(name, version string, end time.Time, path ...state.State) string {
				t.Helper()
				p := f.taskParams(name, "a")
				p.Task.Version = version
				p.Task.CreatedAt, p.Task.UpdatedAt = since.Add(-time.Hour), since.Add(-time.Hour)
				f.create(t, p)
				from := state.Pending
				for i, to := range path {
					at := end.Add(time.Duration(i-len(path)+1) * time.Minute)
					f.advance(t, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at, Task: &store.TaskChange{From: from, To: to}})
					from = to
				}
				return p.Task.ID
			}
			until := since.Add(time.Hour)
			in := func(min int) time.Time { return since.Add(time.Duration(min) * time.Minute) }

			complete := finish("orders", "1.0.0", in(10), state.InProgress, state.Complete)
			errored := finish("orders", "1.0.0", in(20), state.InProgress, state.Error)
			cancelled := finish("orders", "2.0.0", in(30), state.Cancelled)
			resolved := finish("orders", "2.0.0", in(40), state.InProgress, state.Error, state.ResolvedManually)
			atSince := finish("orders", "1.0.0", since, state.InProgress, state.Complete)
			// Completed, then cancelled in the window: it finished when
			// it was cancelled.
			recancelled := finish("orders", "1.0.0", in(50), state.InProgress, state.Complete, state.Cancelled)
			// Two that finished at the same instant come back by ID.
			tieA := finish("orders", "1.0.0", in(45), state.InProgress, state.Complete)
			tieB := finish("orders", "1.0.0", in(45), state.InProgress, state.Complete)
			if tieA < tieB {
				tieA, tieB = tieB, tieA
			}

			// Left out: active, finished before or at the end of the
			// window, failed and retried, another template or namespace.
			finish("orders", "1.0.0", in(15), state.InProgress)
			finish("orders", "1.0.0", in(16))
			finish("orders", "1.0.0", since.Add(-time.Nanosecond), state.InProgress, state.Complete)
			finish("orders", "1.0.0", until, state.InProgress, state.Complete)
			finish("orders", "1.0.0", in(25), state.InProgress, state.Error, state.Pending)
			finish("refunds", "1.0.0", in(25), state.InProgress, state.Complete)
			other := &fixture{ctx: f.ctx, store: f.store, ns: "other-" + f.ns}
			op := other.taskParams("orders", "a")
			other.create(t, op)
			f.advance(t, &store.TaskAdvanceParams{TaskID: op.Task.ID, At: in(25), Task: &store.TaskChange{From: state.Pending, To: state.Cancelled}})

			all := []string{recancelled, tieA, tieB, resolved, cancelled, errored, complete, atSince}
			params := store.TaskListFinishedParams{Namespace: f.ns, Name: "orders", Since: since, Until: until, Limit: 100}
			require.Equal(t, all, f.finishedIDs(t, params))

			params.Limit = 3
			require.Equal(t, all[:3], f.finishedIDs(t, params), "the limit is honoured exactly")
			params.Limit = 100

			params.Version = "2.0.0"
			require.Equal(t, []string{resolved, cancelled}, f.finishedIDs(t, params))
			params.Version = "3.0.0"
			require.Empty(t, f.finishedIDs(t, params))
			params.Version = ""

			params.Since, params.Until = in(20), in(45)
			require.Equal(t, []string{resolved, cancelled, errored}, f.finishedIDs(t, params), "since is in the window, until is not")

			params.Since, params.Until = since, until
			got, err := f.store.TaskListFinished(f.ctx, &params)
			require.NoError(t, err)
			byID := map[string]*store.Task{}
			for _, task := range got {
				byID[task.ID] = task
			}
			requireTimeEqual(t, in(50), byID[recancelled].UpdatedAt, "finish time of a task cancelled after completing")
			require.Equal(t, state.Cancelled, byID[recancelled].State)
			requireTimeEqual(t, in(49), byID[recancelled].CompletedAt, "its completion is kept")
			require.Equal(t, "2.0.0", byID[cancelled].Version)
		})

		t.Run("RefusesBadParams", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			for _, p := range []*store.TaskListFinishedParams{
				nil,
				{Name: "orders", Limit: 1},
				{Namespace: f.ns, Limit: 1},
				{Namespace: f.ns, Name: "orders"},
				{Namespace: f.ns, Name: "orders", Limit: -1},
			} {
				_, err := f.store.TaskListFinished(f.ctx, p)
				require.Error(t, err, "%+v", p)
			}
		})
	})

	t.Run("TransitionListTasks", func(t *testing.T) {
		t.Parallel()

		t.Run("OrderedByTaskThenSeq", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			var ids []string
			for range 3 {
				task, steps := f.createTask(t, "a", "b")
				ids = append(ids, task.ID)
				f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(),
					Task: &store.TaskChange{From: state.Pending, To: state.InProgress}, Steps: []*store.StepChange{startStep(steps[0])}})
			}
			// Interleave the tasks' writes, so seq order is not task
			// order.
			for _, id := range []string{ids[2], ids[0], ids[1]} {
				st := f.stepByName(t, id, "a")
				f.advance(t, &store.TaskAdvanceParams{TaskID: id, At: f.now(), Steps: []*store.StepChange{completeStep(st, 1, `{}`)}})
			}
			unrelated, _ := f.createTask(t, "a")
			f.advance(t, &store.TaskAdvanceParams{TaskID: unrelated.ID, At: f.now(), Task: &store.TaskChange{From: state.Pending, To: state.Cancelled}})

			var want []*store.Transition
			for _, id := range []string{ids[0], ids[1], ids[2]} {
				want = append(want, f.transitions(t, id)...)
			}
			got, err := f.store.TransitionListTasks(f.ctx, ids[1], ids[2], ids[0], ids[1])
			require.NoError(t, err)
			requireTransitions(t, want, got)
			for i := range want {
				require.Equal(t, want[i].Seq, got[i].Seq, "transition %d", i)
			}

			none, err := f.store.TransitionListTasks(f.ctx)
			require.NoError(t, err)
			require.Empty(t, none)
			none, err = f.store.TransitionListTasks(f.ctx, newID())
			require.NoError(t, err)
			require.Empty(t, none)
		})
	})
}

func (f *fixture) finishedIDs(t *testing.T, p store.TaskListFinishedParams) []string {
	t.Helper()
	tasks, err := f.store.TaskListFinished(f.ctx, &p)
	require.NoError(t, err)
	for _, task := range tasks {
		require.True(t, task.State.Terminal(), "task %s is %s", task.ID, task.State)
		require.Equal(t, p.Namespace, task.Namespace)
		require.Equal(t, p.Name, task.Name)
	}
	return taskIDs(tasks)
}
