package sqlite

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestEventPruneNeverReusesSeq: pruning every entry of a finished history
// keeps the newest row, so the next transition gets a larger seq than any
// cursor handed out and resuming from the last cursor finds it. Without
// that row SQLite would give the next row max(rowid)+1 of what is left.
func TestEventPruneNeverReusesSeq(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Unix(1_700_000_000, 0)
	p := storetest.TaskParams("ns", at, "a")
	_, _, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)
	start := []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}}
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at, Steps: start,
		Task: &store.TaskChange{From: state.Pending, To: state.InProgress}})
	require.NoError(t, err)
	// The task is cancelled, then its running step: the newest row is a
	// step's, which the prune would otherwise delete.
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at, Task: &store.TaskChange{From: state.InProgress, To: state.Cancelled}})
	require.NoError(t, err)
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
		Steps: []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.InProgress, To: state.Cancelled, ExpectAttempts: 1, Attempts: 1}}})
	require.NoError(t, err)
	page, err := s.EventList(ctx, &store.EventListParams{})
	require.NoError(t, err)
	require.Len(t, page.Events, 4)
	last := page.Next

	res, err := s.EventPrune(ctx, &store.EventPruneParams{Before: at.Add(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, 4, res.Examined)
	require.Equal(t, 2, res.Deleted, "the task's first transition and the step's first go; the task's last one and the newest row stay")
	require.Equal(t, last, res.Oldest)

	q := storetest.TaskParams("ns", at, "a")
	_, _, err = s.TaskCreate(ctx, q)
	require.NoError(t, err)
	trs, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: q.Task.ID, At: at,
		Task: &store.TaskChange{From: state.Pending, To: state.Cancelled}})
	require.NoError(t, err)
	page, err = s.EventList(ctx, &store.EventListParams{After: last})
	require.NoError(t, err)
	require.Len(t, page.Events, 1)
	require.Equal(t, trs[0].Seq, page.Events[0].Transition.Seq)
}

// TestEventPlans pins the event log's reads and the prune's delete to
// their indexes, so they cost in proportion to the entries they touch.
func TestEventPlans(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	storetest.SeedTasks(t, s, "ns", 20)
	plan := func(query string, args ...any) string {
		t.Helper()
		return explainPlan(t, s, query, args...)
	}
	list := plan(eventListQuery, 0, 100)
	require.Contains(t, list, "SEARCH transitions USING INTEGER PRIMARY KEY (rowid>?)", list)
	require.Contains(t, list, "SEARCH k USING PRIMARY KEY (id=?)", list)
	require.NotContains(t, list, "SCAN transitions", list)
	del := plan(eventPruneDelete, 0, 10, 1)
	require.Contains(t, del, "SEARCH transitions USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)", del)
	require.Contains(t, del, "SEARCH k USING PRIMARY KEY (id=?)", del)
	require.Contains(t, del, "steps_in_progress", del)
	require.Contains(t, del, "SEARCH t2 USING INDEX transitions_task_id_seq (task_id=?)", del)
}

// A cursor ahead of the newest event is refused, not waited on: no cursor
// this store handed out can be, so it comes from another store, or from
// this one before it was restored from a plain copy (which, unlike tasker
// backup's, leaves no restore mark): read as a position, it would skip
// every event the restored store writes below it.
func TestEventListRefusesCursorsAheadOfTheLog(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "tasker.db")
	s, err := Open(ctx, Config{Path: path})
	require.NoError(t, err)
	ahead := func(s *Store, cursor string) {
		t.Helper()
		_, err := s.EventList(ctx, &store.EventListParams{After: cursor})
		require.ErrorIs(t, err, store.ErrCursorInvalid, "cursor %s", cursor)
		require.ErrorContains(t, err, "ahead of the newest event")
	}
	tail, err := s.EventTail(ctx)
	require.NoError(t, err)
	require.Equal(t, "0", tail)
	_, err = s.EventList(ctx, &store.EventListParams{After: tail})
	require.NoError(t, err)
	ahead(s, "1")

	at := time.Unix(1_700_000_000, 0)
	cancel := func(s *Store) {
		t.Helper()
		p := storetest.TaskParams("ns", at, "a")
		_, _, err := s.TaskCreate(ctx, p)
		require.NoError(t, err)
		_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
			Task: &store.TaskChange{From: state.Pending, To: state.Cancelled}})
		require.NoError(t, err)
	}
	cancel(s)
	tail, err = s.EventTail(ctx)
	require.NoError(t, err)
	page, err := s.EventList(ctx, &store.EventListParams{After: tail})
	require.NoError(t, err, "the newest event's own cursor")
	require.Empty(t, page.Events)
	ahead(s, tail+"0")

	// A plain copy of the file, taken here (closed, so the file holds
	// everything), then more events on the original.
	require.NoError(t, s.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	copyPath := filepath.Join(dir, "copy.db")
	require.NoError(t, os.WriteFile(copyPath, data, 0o600))
	s = openStore(t, Config{Path: path})
	cancel(s)
	cancel(s)
	later, err := s.EventTail(ctx)
	require.NoError(t, err)
	restored := openStore(t, Config{Path: copyPath})
	ahead(restored, later)
	page, err = restored.EventList(ctx, &store.EventListParams{After: tail})
	require.NoError(t, err, "a cursor the copy's own events reach")
	require.Empty(t, page.Events)
}
