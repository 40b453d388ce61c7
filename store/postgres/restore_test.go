package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// restoreFixture is a store with a task and a few events, the original a
// dump is taken from; the tests then turn its schema into what a restore
// of that dump leaves and open it again, as a coordinator started on the
// restored database would.
type restoreFixture struct {
	t      *testing.T
	ctx    context.Context
	schema string
	admin  *pgx.Conn
	taskID string
	// original is the store the dump was taken from; its log ends at last.
	original *Store
	last     string
	events   []string
}

func newRestoreFixture(t *testing.T) *restoreFixture {
	schema := newSchema(t)
	f := &restoreFixture{t: t, ctx: t.Context(), schema: schema, admin: adminConn(t, schema)}
	f.original = openStore(t, Config{Schema: schema})
	p := storetest.TaskParams("ns", time.Now(), "a")
	_, _, err := f.original.TaskCreate(f.ctx, p)
	require.NoError(t, err)
	f.taskID = p.Task.ID
	for _, r := range []string{"old-1", "old-2", "old-3"} {
		f.insert(r)
	}
	f.events, f.last = f.follow(f.original, "", "old-3")
	return f
}

// insert commits one transition, written as a coordinator's are, its xact
// from the column's default.
func (f *restoreFixture) insert(reason string) {
	f.t.Helper()
	_, err := f.admin.Exec(f.ctx, `INSERT INTO transitions (task_id, step_name, from_state, to_state, at, reason, attempt)
		VALUES ($1, '', 'pending', 'pending', 1, $2, 0)`, f.taskID, reason)
	require.NoError(f.t, err)
}

// follow reads s's log from cursor until it has read the event with reason
// until, and returns the reasons read and the cursor after them. Rows pass
// the horizon when every transaction older than theirs has ended, which
// other tests' may delay: hence the wait.
func (f *restoreFixture) follow(s *Store, cursor, until string) ([]string, string) {
	f.t.Helper()
	var reasons []string
	require.Eventually(f.t, func() bool {
		page, err := s.EventList(f.ctx, &store.EventListParams{After: cursor, Limit: 1000})
		require.NoError(f.t, err)
		for _, ev := range page.Events {
			reasons = append(reasons, ev.Transition.Reason)
		}
		cursor = page.Next
		return len(reasons) > 0 && reasons[len(reasons)-1] == until && !page.More
	}, 10*time.Second, time.Millisecond, "read %v, waiting for %q", reasons, until)
	return reasons, cursor
}

// later is a cursor the original could have handed out after the dump:
// beyond its last event, by transactions the restore never saw.
func (f *restoreFixture) later() string {
	f.t.Helper()
	p, err := parseCursor(f.last)
	require.NoError(f.t, err)
	return position{p.xact + 40, p.seq + 7}.String()
}

func (f *restoreFixture) restores() int {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.admin.QueryRow(f.ctx, `SELECT count(*) FROM event_restores`).Scan(&n))
	return n
}

// reopen opens the store again, as a coordinator started on the restored
// database would, while a transaction that began before it stays open
// elsewhere in the cluster (holding the horizon below the new era's first
// id), and returns it with its event tail taken meanwhile.
func (f *restoreFixture) reopen() (*Store, string) {
	f.t.Helper()
	older, err := adminConn(f.t, f.schema).Begin(f.ctx)
	require.NoError(f.t, err)
	defer func() { require.NoError(f.t, older.Rollback(f.ctx)) }()
	require.NoError(f.t, older.QueryRow(f.ctx, `SELECT txid_current()`).Scan(new(int64)))
	s := openStore(f.t, Config{Schema: f.schema})
	tail, err := s.EventTail(f.ctx)
	require.NoError(f.t, err)
	_, err = s.EventList(f.ctx, &store.EventListParams{After: tail})
	require.NoError(f.t, err, "the tail is a cursor of the new era")
	return s, tail
}

// requireRestored checks what a coordinator on the restored database owes
// its subscribers: every restored event, in order; a refusal, naming where
// to resume, of a cursor the original handed out after the dump; and the
// new events after the restored log's last cursor and after its tails,
// the one taken while an older transaction was open and one taken after.
// Opened again, the store finds no further restore.
func (f *restoreFixture) requireRestored(restored *Store, earlyTail string) {
	t := f.t
	got, last := f.follow(restored, "", "old-3")
	require.Equal(t, f.events, got)
	require.Equal(t, 1, f.restores())

	_, err := restored.EventList(f.ctx, &store.EventListParams{After: f.later()})
	require.ErrorIs(t, err, store.ErrCursorRestored)
	var re *store.CursorRestoredError
	require.True(t, errors.As(err, &re))
	require.Equal(t, last, re.Resume, "the refusal names the restored log's last cursor")

	tail, err := restored.EventTail(f.ctx)
	require.NoError(t, err)
	f.insert("new-1")
	got, _ = f.follow(restored, last, "new-1")
	require.Equal(t, []string{"new-1"}, got)
	got, _ = f.follow(restored, tail, "new-1")
	require.Equal(t, []string{"new-1"}, got)
	got, _ = f.follow(restored, earlyTail, "new-1")
	require.Equal(t, []string{"new-1"}, got)

	again := openStore(t, Config{Schema: f.schema})
	require.Equal(t, 1, f.restores(), "opened again, the store is where it was")
	got, _ = f.follow(again, last, "new-1")
	require.Equal(t, []string{"new-1"}, got)

	// Pruning reads past the restored entries into the new era's.
	require.Eventually(t, func() bool {
		res, err := again.EventPrune(f.ctx, &store.EventPruneParams{Before: time.Now().Add(time.Hour), Limit: 1000})
		require.NoError(t, err)
		return res.Examined > 0 && res.Oldest != "" && !positionBefore(t, res.Oldest, last)
	}, 10*time.Second, time.Millisecond)
}

func positionBefore(t *testing.T, a, b string) bool {
	pa, err := parseCursor(a)
	require.NoError(t, err)
	pb, err := parseCursor(b)
	require.NoError(t, err)
	return pa.less(pb)
}

// TestRestoreIntoAClusterBehind is a dump restored into a cluster whose
// transaction ids are behind the original's (a new cluster, say): its
// stored ids are ahead of every id the new cluster hands out, which the
// test stands in for by moving them 10^12 ahead. A store reading them as
// they are would hide every one (each above its horizon) and sort its new
// events before them; the store finds the restore, starts a new era above
// them and reads on.
func TestRestoreIntoAClusterBehind(t *testing.T) {
	t.Parallel()
	f := newRestoreFixture(t)
	want := f.events
	_, err := f.admin.Exec(f.ctx, `UPDATE transitions SET xact = xact + 1000000000000`)
	require.NoError(t, err)
	// The original, opened before, reads as the restored database would
	// without the check: none of the moved entries.
	page, err := f.original.EventList(f.ctx, &store.EventListParams{})
	require.NoError(t, err)
	require.Empty(t, page.Events, "the moved entries are above the horizon")

	restored, tail := f.reopen()
	// The entries' cursors moved with them: the original's later cursors
	// are reckoned from the moved last one.
	f.events, f.last = f.follow(restored, "", "old-3")
	require.Equal(t, want, f.events)
	var reason string
	require.NoError(t, f.admin.QueryRow(f.ctx, `SELECT reason FROM event_restores`).Scan(&reason))
	require.Contains(t, reason, "restored from another cluster")
	f.requireRestored(restored, tail)
}

// TestRestoreIntoTheSameCluster is a dump restored into another database
// or schema of the original's cluster: the ids go on rising, so the
// restored entries stay in order, but the original may have handed out
// cursors after the dump; the store tells the restore by where it now
// lives (the stored identity, taken from the original, differs).
func TestRestoreIntoTheSameCluster(t *testing.T) {
	t.Parallel()
	f := newRestoreFixture(t)
	_, err := f.admin.Exec(f.ctx, `UPDATE store_identity SET identity = '1/2/3'`)
	require.NoError(t, err)

	restored, tail := f.reopen()
	var reason string
	require.NoError(t, f.admin.QueryRow(f.ctx, `SELECT reason FROM event_restores`).Scan(&reason))
	require.Contains(t, reason, "restored from a dump")
	f.requireRestored(restored, tail)
}

// TestNoRestoreWithoutOne: opening a store again, while another writes to
// it, finds no restore and moves nothing.
func TestNoRestoreWithoutOne(t *testing.T) {
	t.Parallel()
	f := newRestoreFixture(t)
	for _, r := range []string{"more-1", "more-2", "more-3"} {
		f.insert(r)
		openStore(t, Config{Schema: f.schema})
	}
	require.Zero(t, f.restores())
	// Each reason its own: follow reads until the last one has passed the
	// horizon, not until any has.
	got, _ := f.follow(f.original, f.last, "more-3")
	require.Equal(t, []string{"more-1", "more-2", "more-3"}, got)
}

func TestSameIdentity(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"7/16384/16500", "7/16384/16500", true},
		{"7/16384/16500", "8/16384/16500", false},
		{"7/16384/16500", "7/16385/16500", false},
		{"7/16384/16500", "7/16384/16501", false},
		{"/16384/16500", "7/16384/16500", true},
		{"7/16384/16500", "/16384/16500", true},
		{"/16384/16500", "/16384/16501", false},
	} {
		require.Equal(t, c.same, sameIdentity(c.a, c.b), "%s vs %s", c.a, c.b)
	}
}
