package storetest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// debounced builds a stepless task with a debounce key, starting at runAt.
func (f *fixture) debounced(key string, runAt time.Time, ctx string) *store.TaskCreateParams {
	p := f.taskParams("debounced", "only")
	p.Task.IdentityKey = ""
	p.Task.DebounceKey = key
	p.Task.RunAt = runAt
	p.Task.Context = json.RawMessage(ctx)
	return p
}

func (s *suite) debounce(t *testing.T) {
	t.Run("TaskCreateDebounced", func(t *testing.T) {
		t.Parallel()

		t.Run("FoldsIntoOpenTask", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			runAt := f.now().Add(time.Hour)
			first := f.create(t, f.debounced("k", runAt, `{"n":1}`))
			require.Equal(t, "k", first.DebounceKey)
			requireTimeEqual(t, runAt, first.RunAt, "RunAt")

			again := f.debounced("k", runAt.Add(time.Minute), `{"n":2}`)
			got, created, err := f.store.TaskCreate(f.ctx, again)
			require.NoError(t, err)
			require.False(t, created)
			requireTask(t, first, got)
			_, err = f.store.TaskGet(f.ctx, again.Task.ID)
			require.ErrorIs(t, err, store.ErrNotFound, "nothing of the repeat is stored")
			require.Empty(t, f.steps(t, again.Task.ID))

			// Another key, or another template with the key, is a task of its own.
			f.create(t, f.debounced("other", runAt, `{}`))
			p := f.debounced("k", runAt, `{}`)
			p.Task.Name = "another"
			f.create(t, p)
		})

		t.Run("ReplacesStartedTask", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			// Its start time passed: the next create stores a new task.
			runAt := f.now()
			first := f.create(t, f.debounced("k", runAt, `{"n":1}`))
			second := f.create(t, f.debounced("k", f.now().Add(time.Hour), `{"n":2}`))
			require.NotEqual(t, first.ID, second.ID)
			requireTask(t, first, f.task(t, first.ID))

			// No longer pending (it started, or was cancelled) before its
			// start time: a new task too.
			f.advance(t, &store.TaskAdvanceParams{TaskID: second.ID, At: f.now(),
				Task: &store.TaskChange{From: state.Pending, To: state.Cancelled, Reason: "cancelled"}})
			third := f.create(t, f.debounced("k", f.now().Add(time.Hour), `{"n":3}`))
			require.NotEqual(t, second.ID, third.ID)

			got, created, err := f.store.TaskCreate(f.ctx, f.debounced("k", f.now().Add(time.Hour), `{"n":4}`))
			require.NoError(t, err)
			require.False(t, created)
			require.Equal(t, third.ID, got.ID)
		})

		t.Run("ConcurrentCreatesStoreOneTask", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			stores := append(f.stores(t, 2), f.store)
			runAt := f.now().Add(time.Hour)
			const n = 24
			ids := make([]string, n)
			created := make([]bool, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				p := f.debounced("burst", runAt, `{}`)
				wg.Go(func() {
					var got *store.Task
					got, created[i], errs[i] = stores[i%len(stores)].TaskCreate(f.ctx, p)
					if got != nil {
						ids[i] = got.ID
					}
				})
			}
			wg.Wait()
			news := 0
			for i := range n {
				require.NoError(t, errs[i], "create %d", i)
				require.Equal(t, ids[0], ids[i], "create %d", i)
				if created[i] {
					news++
				}
			}
			require.Equal(t, 1, news)
			all, err := f.store.TaskList(f.ctx, &store.TaskListParams{Namespace: f.ns})
			require.NoError(t, err)
			require.Len(t, all, 1)
		})
	})

	t.Run("TaskDebounce", func(t *testing.T) {
		t.Parallel()

		t.Run("ReplacesContextAndStartTime", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			l := f.acquire(t, "a")
			runAt := f.now().Add(time.Hour)
			p := f.debounced("k", runAt, `{"n":1}`)
			p.Task.OwnerToken = l.Token
			task := f.create(t, p)
			later := runAt.Add(time.Minute)
			require.NoError(t, f.store.TaskDebounce(f.ctx, &store.TaskDebounceParams{
				TaskID: task.ID, Lease: l, Context: json.RawMessage(`{"n":2}`), RunAt: later, ExpectRunAt: runAt, At: f.now(),
			}))
			want := *task
			want.Context, want.RunAt = json.RawMessage(`{"n":2}`), later
			requireTask(t, &want, f.task(t, task.ID))
			require.Empty(t, f.transitions(t, task.ID), "no transition: the state did not change")

			// Without a lease it is not fenced; an earlier start time is allowed.
			require.NoError(t, f.store.TaskDebounce(f.ctx, &store.TaskDebounceParams{
				TaskID: task.ID, Context: json.RawMessage(`{"n":3}`), RunAt: runAt, ExpectRunAt: later, At: f.now(),
			}))
			want.Context, want.RunAt = json.RawMessage(`{"n":3}`), runAt
			requireTask(t, &want, f.task(t, task.ID))
		})

		t.Run("RefusedOnceStartedOrClosedOrMoved", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			runAt := f.now().Add(time.Hour)
			task := f.create(t, f.debounced("k", runAt, `{"n":1}`))
			update := func(expect, at time.Time) error {
				return f.store.TaskDebounce(f.ctx, &store.TaskDebounceParams{
					TaskID: task.ID, Context: json.RawMessage(`{"n":9}`), RunAt: at.Add(time.Hour), ExpectRunAt: expect, At: at,
				})
			}
			require.ErrorIs(t, update(runAt.Add(time.Second), f.now()), store.ErrConflict, "start time moved")
			require.ErrorIs(t, update(runAt, runAt), store.ErrConflict, "start time reached")
			requireTask(t, task, f.task(t, task.ID))

			// Closed by a create that judged it started.
			p := f.debounced("k", runAt.Add(3*time.Hour), `{}`)
			p.Task.CreatedAt = runAt.Add(time.Second)
			p.Task.UpdatedAt = p.Task.CreatedAt
			successor, created, err := f.store.TaskCreate(f.ctx, p)
			require.NoError(t, err)
			require.True(t, created)
			require.NotEqual(t, task.ID, successor.ID)
			require.ErrorIs(t, update(runAt, runAt.Add(-time.Minute)), store.ErrConflict, "closed")

			other := f.create(t, f.debounced("x", runAt, `{}`))
			f.advance(t, &store.TaskAdvanceParams{TaskID: other.ID, At: f.now(),
				Task: &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "started"}})
			err = f.store.TaskDebounce(f.ctx, &store.TaskDebounceParams{
				TaskID: other.ID, RunAt: runAt.Add(time.Hour), ExpectRunAt: runAt, At: f.now(),
			})
			require.ErrorIs(t, err, store.ErrConflict, "no longer pending")

			err = f.store.TaskDebounce(f.ctx, &store.TaskDebounceParams{
				TaskID: newID(), RunAt: runAt, ExpectRunAt: runAt, At: f.now(),
			})
			require.ErrorIs(t, err, store.ErrNotFound)
		})

		t.Run("FencedByLease", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			owner := f.acquire(t, "owner")
			other := f.acquire(t, "other")
			runAt := f.now().Add(time.Hour)
			p := f.debounced("k", runAt, `{"n":1}`)
			p.Task.OwnerToken = owner.Token
			task := f.create(t, p)
			err := f.store.TaskDebounce(f.ctx, &store.TaskDebounceParams{
				TaskID: task.ID, Lease: other, Context: json.RawMessage(`{"n":2}`), RunAt: runAt, ExpectRunAt: runAt, At: f.now(),
			})
			require.ErrorIs(t, err, store.ErrLeaseLost)
			requireTask(t, task, f.task(t, task.ID))
		})

		// The owner folding a create in and another create judging the task
		// started race on one row: exactly one wins, and the loser sees it.
		t.Run("RacesTheCloseOfAStartedTask", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			for range 10 {
				key := newID()
				runAt := f.now()
				task := f.create(t, f.debounced(key, runAt, `{"n":1}`))
				late := f.debounced(key, runAt.Add(2*time.Hour), `{"n":3}`)
				late.Task.CreatedAt = runAt.Add(time.Nanosecond)
				var (
					wg      sync.WaitGroup
					upErr   error
					got     *store.Task
					created bool
					err     error
				)
				other := f.open(t)
				wg.Go(func() {
					upErr = f.store.TaskDebounce(f.ctx, &store.TaskDebounceParams{
						TaskID: task.ID, Context: json.RawMessage(`{"n":2}`), RunAt: runAt.Add(time.Hour),
						ExpectRunAt: runAt, At: runAt.Add(-time.Nanosecond),
					})
				})
				wg.Go(func() { got, created, err = other.TaskCreate(f.ctx, late) })
				wg.Wait()
				require.NoError(t, err)
				if upErr == nil {
					require.False(t, created, "the update came first: the task had not started")
					require.Equal(t, task.ID, got.ID)
					require.JSONEq(t, `{"n":2}`, string(f.task(t, task.ID).Context))
				} else {
					require.ErrorIs(t, upErr, store.ErrConflict)
					require.True(t, created, "the close came first: a new task")
					require.JSONEq(t, `{"n":1}`, string(f.task(t, task.ID).Context))
				}
			}
		})
	})
}
