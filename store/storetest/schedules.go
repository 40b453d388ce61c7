package storetest

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
)

func (s *suite) schedules(t *testing.T) {
	t.Run("ScheduleCreate", func(t *testing.T) {
		t.Parallel()
		t.Run("RoundTrips", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			want := f.schedule("nightly")
			want.Buffered = f.now()
			got, err := f.store.ScheduleCreate(f.ctx, want)
			require.NoError(t, err)
			require.Equal(t, int64(1), got.Revision)
			read, err := f.store.ScheduleGet(f.ctx, "nightly")
			require.NoError(t, err)
			requireScheduleEqual(t, got, read)
		})
		t.Run("DuplicateNameStoresNothing", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			first := f.schedule("dup")
			_, err := f.store.ScheduleCreate(f.ctx, first)
			require.NoError(t, err)
			second := f.schedule("dup")
			second.Cron = "0 0 * * *"
			_, err = f.store.ScheduleCreate(f.ctx, second)
			require.ErrorIs(t, err, store.ErrScheduleExists)
			read, err := f.store.ScheduleGet(f.ctx, "dup")
			require.NoError(t, err)
			require.Equal(t, first.ID, read.ID)
			require.Equal(t, first.Cron, read.Cron)
		})
		t.Run("RefusesIncomplete", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			bad := f.schedule("bad")
			bad.Cron = ""
			_, err := f.store.ScheduleCreate(f.ctx, bad)
			require.Error(t, err)
			_, err = f.store.ScheduleGet(f.ctx, "bad")
			require.ErrorIs(t, err, store.ErrNotFound)
		})
	})

	t.Run("ScheduleGet", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		_, err := f.store.ScheduleGet(f.ctx, "nope")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("ScheduleList", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		for _, n := range []string{"b", "c", "a"} {
			_, err := f.store.ScheduleCreate(f.ctx, f.schedule(n))
			require.NoError(t, err)
		}
		list, err := f.store.ScheduleList(f.ctx)
		require.NoError(t, err)
		var names []string
		for _, s := range list {
			names = append(names, s.Name)
		}
		require.Equal(t, []string{"a", "b", "c"}, names)
	})

	t.Run("ScheduleAdvance", func(t *testing.T) {
		t.Parallel()
		t.Run("ConditionalOnRevision", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			sched, err := f.store.ScheduleCreate(f.ctx, f.schedule("s"))
			require.NoError(t, err)
			fire := sched.NextFireAt
			next := fire.Add(time.Minute)
			at := f.now()
			adv, err := f.store.ScheduleAdvance(f.ctx, &store.ScheduleAdvanceParams{
				ID: sched.ID, ExpectRevision: 1, NextFireAt: next, At: at,
				Runs: []*store.ScheduleRun{{FireAt: fire, TaskID: "task-1"}},
			})
			require.NoError(t, err)
			require.Equal(t, int64(2), adv.Revision)
			requireTimeEqual(t, next, adv.NextFireAt, "NextFireAt")
			requireTimeEqual(t, at, adv.UpdatedAt, "UpdatedAt")

			// A second writer from the same revision loses, and writes nothing.
			_, err = f.store.ScheduleAdvance(f.ctx, &store.ScheduleAdvanceParams{
				ID: sched.ID, ExpectRevision: 1, NextFireAt: next.Add(time.Hour), Paused: true, At: f.now(),
				Runs: []*store.ScheduleRun{{FireAt: next, TaskID: "task-2"}},
			})
			require.ErrorIs(t, err, store.ErrConflict)
			read, err := f.store.ScheduleGet(f.ctx, "s")
			require.NoError(t, err)
			requireScheduleEqual(t, adv, read)
			runs, err := f.store.ScheduleRunList(f.ctx, &store.ScheduleRunListParams{ScheduleID: sched.ID})
			require.NoError(t, err)
			require.Len(t, runs, 1)
			require.Equal(t, "task-1", runs[0].TaskID)
			requireTimeEqual(t, fire, runs[0].FireAt, "FireAt")
			requireTimeEqual(t, at, runs[0].CreatedAt, "CreatedAt")

			_, err = f.store.ScheduleAdvance(f.ctx, &store.ScheduleAdvanceParams{ID: "missing", ExpectRevision: 1, NextFireAt: next, At: f.now()})
			require.ErrorIs(t, err, store.ErrNotFound)
		})
		t.Run("PausedBufferedAndSkippedRanges", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			sched, err := f.store.ScheduleCreate(f.ctx, f.schedule("s"))
			require.NoError(t, err)
			fire := sched.NextFireAt
			adv, err := f.store.ScheduleAdvance(f.ctx, &store.ScheduleAdvanceParams{
				ID: sched.ID, ExpectRevision: 1, NextFireAt: fire.Add(time.Hour), Buffered: fire, Paused: true, At: f.now(),
				Runs: []*store.ScheduleRun{{FireAt: fire.Add(-time.Hour), Skipped: "catch-up window", Count: 60, LastFireAt: fire.Add(-time.Minute)}},
			})
			require.NoError(t, err)
			require.True(t, adv.Paused)
			requireTimeEqual(t, fire, adv.Buffered, "Buffered")
			runs, err := f.store.ScheduleRunList(f.ctx, &store.ScheduleRunListParams{ScheduleID: sched.ID})
			require.NoError(t, err)
			require.Len(t, runs, 1)
			require.Equal(t, 60, runs[0].Count)
			require.Equal(t, "catch-up window", runs[0].Skipped)
			requireTimeEqual(t, fire.Add(-time.Minute), runs[0].LastFireAt, "LastFireAt")
		})
		t.Run("RacingStoresOneWins", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			sched, err := f.store.ScheduleCreate(f.ctx, f.schedule("race"))
			require.NoError(t, err)
			stores := []store.Store{f.store, f.open(t), f.open(t)}
			var (
				wg         sync.WaitGroup
				mu         sync.Mutex
				won, lost  int
				unexpected []error
			)
			for i := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := stores[i%len(stores)].ScheduleAdvance(f.ctx, &store.ScheduleAdvanceParams{
						ID: sched.ID, ExpectRevision: 1, NextFireAt: sched.NextFireAt.Add(time.Minute), At: f.now(),
						Runs: []*store.ScheduleRun{{FireAt: sched.NextFireAt, TaskID: "t"}},
					})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						won++
					case errors.Is(err, store.ErrConflict):
						lost++
					default:
						unexpected = append(unexpected, err)
					}
				}()
			}
			wg.Wait()
			require.Empty(t, unexpected)
			require.Equal(t, 1, won)
			require.Equal(t, 11, lost)
			read, err := f.store.ScheduleGet(f.ctx, "race")
			require.NoError(t, err)
			require.Equal(t, int64(2), read.Revision)
		})
	})

	t.Run("ScheduleRunRecord", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		sched, err := f.store.ScheduleCreate(f.ctx, f.schedule("s"))
		require.NoError(t, err)
		base := sched.NextFireAt
		_, err = f.store.ScheduleAdvance(f.ctx, &store.ScheduleAdvanceParams{
			ID: sched.ID, ExpectRevision: 1, NextFireAt: base.Add(3 * time.Minute), At: f.now(),
			Runs: []*store.ScheduleRun{
				{FireAt: base, TaskID: "t0"},
				{FireAt: base.Add(time.Minute), Skipped: "overlap", Count: 1},
			},
		})
		require.NoError(t, err)
		runs := []*store.ScheduleRun{
			{FireAt: base, TaskID: "t0-again"},
			{FireAt: base.Add(time.Minute), TaskID: "t1"},
			{FireAt: base.Add(2 * time.Minute), TaskID: "t2"},
		}
		n, err := f.store.ScheduleRunRecord(f.ctx, sched.ID, runs)
		require.NoError(t, err)
		require.Equal(t, 2, n, "the fire time with a task run already is left out")
		n, err = f.store.ScheduleRunRecord(f.ctx, sched.ID, runs)
		require.NoError(t, err)
		require.Zero(t, n)

		tasks, err := f.store.ScheduleRunList(f.ctx, &store.ScheduleRunListParams{ScheduleID: sched.ID, TasksOnly: true})
		require.NoError(t, err)
		var ids []string
		for _, r := range tasks {
			ids = append(ids, r.TaskID)
		}
		require.Equal(t, []string{"t2", "t1", "t0"}, ids, "latest fire time first")
		all, err := f.store.ScheduleRunList(f.ctx, &store.ScheduleRunListParams{ScheduleID: sched.ID})
		require.NoError(t, err)
		require.Len(t, all, 4, "the skipped run stays beside the task run of its fire time")
		window, err := f.store.ScheduleRunList(f.ctx, &store.ScheduleRunListParams{
			ScheduleID: sched.ID, From: base.Add(time.Minute), To: base.Add(time.Minute), TasksOnly: true,
		})
		require.NoError(t, err)
		require.Len(t, window, 1)
		require.Equal(t, "t1", window[0].TaskID)
		limited, err := f.store.ScheduleRunList(f.ctx, &store.ScheduleRunListParams{ScheduleID: sched.ID, Limit: 1})
		require.NoError(t, err)
		require.Len(t, limited, 1)

		_, err = f.store.ScheduleRunRecord(f.ctx, "missing", runs)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("ScheduleDelete", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		sched, err := f.store.ScheduleCreate(f.ctx, f.schedule("gone"))
		require.NoError(t, err)
		_, err = f.store.ScheduleRunRecord(f.ctx, sched.ID, []*store.ScheduleRun{{FireAt: sched.NextFireAt, TaskID: "t"}})
		require.NoError(t, err)
		require.NoError(t, f.store.ScheduleDelete(f.ctx, "gone"))
		_, err = f.store.ScheduleGet(f.ctx, "gone")
		require.ErrorIs(t, err, store.ErrNotFound)
		runs, err := f.store.ScheduleRunList(f.ctx, &store.ScheduleRunListParams{ScheduleID: sched.ID})
		require.NoError(t, err)
		require.Empty(t, runs)
		require.ErrorIs(t, f.store.ScheduleDelete(f.ctx, "gone"), store.ErrNotFound)
		// The name is free again.
		_, err = f.store.ScheduleCreate(f.ctx, f.schedule("gone"))
		require.NoError(t, err)
	})
}

// schedule builds a schedule named name, due a minute after now.
func (f *fixture) schedule(name string) *store.Schedule {
	at := f.now()
	return &store.Schedule{
		ID: newID(), Name: name, Namespace: f.ns, TemplateName: "linear", TemplateVersion: "1.0.0",
		Cron: "* * * * *", Timezone: "Europe/Paris", Context: json.RawMessage(`{"region":"eu","n":1}`),
		Overlap: "skip", CatchupWindow: 90 * time.Minute, NextFireAt: at.Add(time.Minute),
		CreatedAt: at, UpdatedAt: at,
	}
}

func requireScheduleEqual(t *testing.T, want, got *store.Schedule) {
	t.Helper()
	for _, tm := range []struct {
		name      string
		want, got time.Time
	}{
		{"NextFireAt", want.NextFireAt, got.NextFireAt}, {"Buffered", want.Buffered, got.Buffered},
		{"CreatedAt", want.CreatedAt, got.CreatedAt}, {"UpdatedAt", want.UpdatedAt, got.UpdatedAt},
	} {
		requireTimeEqual(t, tm.want, tm.got, tm.name)
	}
	require.JSONEq(t, string(want.Context), string(got.Context))
	w, g := *want, *got
	w.NextFireAt, w.Buffered, w.CreatedAt, w.UpdatedAt, w.Context = time.Time{}, time.Time{}, time.Time{}, time.Time{}, nil
	g.NextFireAt, g.Buffered, g.CreatedAt, g.UpdatedAt, g.Context = time.Time{}, time.Time{}, time.Time{}, time.Time{}, nil
	require.Equal(t, w, g)
}
