package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
	"github.com/tasker-go/tasker/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openStore opens a store on a fresh file unless cfg names one, and closes
// it when the test ends.
func openStore(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(tb.TempDir(), "tasker.db")
	}
	s, err := Open(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, s.Close()) })
	return s
}

// newDatabase is the suite's factory: a fresh file, opened by as many
// stores as a test asks for.
func newDatabase(tb testing.TB) storetest.Opener {
	path := filepath.Join(tb.TempDir(), "tasker.db")
	return func(tb testing.TB) store.Store {
		// A held write lock (HoldWrites) must outlast a slow machine.
		return testStore{Store: openStore(tb, Config{Path: path, BusyTimeout: time.Minute}), path: path}
	}
}

// testStore adds what the suite's optional cases need.
type testStore struct {
	*Store
	path string
}

// HoldWrites implements storetest.WriteHolder.
func (s testStore) HoldWrites(tb testing.TB) (release func()) { return holdWriteLock(tb, s.path) }

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t.Context(), t, newDatabase)
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b.Context(), b, newDatabase)
}

func TestOpenRejectsBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"no path":         {},
		"memory":          {Path: ":memory:"},
		"query in path":   {Path: filepath.Join(dir, "x.db?mode=ro")},
		"bad synchronous": {Path: filepath.Join(dir, "x.db"), Synchronous: "off"},
		"negative batch":  {Path: filepath.Join(dir, "x.db"), MaxBatch: -1},
	} {
		_, err := Open(t.Context(), cfg)
		require.Error(t, err, name)
	}
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		synchronous string
		want        int
	}{
		{"", 2}, // FULL is the default
		{"full", 2},
		{"normal", 1},
	} {
		t.Run("synchronous="+tc.synchronous, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Config{Synchronous: tc.synchronous, BusyTimeout: 7 * time.Second})
			ctx := t.Context()

			check := func(conn *sqlx.Conn, which string) {
				t.Helper()
				var sync, fk, busy int
				var journal string
				require.NoError(t, conn.GetContext(ctx, &sync, "PRAGMA synchronous"))
				require.NoError(t, conn.GetContext(ctx, &journal, "PRAGMA journal_mode"))
				require.NoError(t, conn.GetContext(ctx, &fk, "PRAGMA foreign_keys"))
				require.NoError(t, conn.GetContext(ctx, &busy, "PRAGMA busy_timeout"))
				require.Equal(t, tc.want, sync, "%s synchronous", which)
				require.Equal(t, "wal", journal, "%s journal_mode", which)
				require.Equal(t, 1, fk, "%s foreign_keys", which)
				require.Equal(t, 7000, busy, "%s busy_timeout", which)
			}

			// The writer's one connection, which the store holds (the
			// committer is idle, so it is free), and several reader
			// connections at once, so each is a distinct pooled connection.
			check(s.wconn, "writer")
			var tempStore int
			require.NoError(t, s.wconn.GetContext(ctx, &tempStore, "PRAGMA temp_store"))
			require.Equal(t, 2, tempStore, "writer temp_store is MEMORY, so savepoint journals stay off disk")

			var readers []*sqlx.Conn
			for i := range 3 {
				conn, err := s.reader.Connx(ctx)
				require.NoError(t, err)
				readers = append(readers, conn)
				check(conn, fmt.Sprintf("reader %d", i))
			}
			for _, conn := range readers {
				require.NoError(t, conn.Close())
			}
		})
	}
}

// TestBatchFailsTogether breaks the transaction from inside one request:
// then no request in the batch may report success, and none is stored.
func TestBatchFailsTogether(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := storetest.TaskParams("ns", at, "a")
	before := s.Stats()

	batch := []*groupcommit.Request[applyFunc]{
		groupcommit.NewRequest("create", func(ctx context.Context, tx *wtx) error {
			_, _, err := createTask(ctx, tx, p)
			return err
		}),
		groupcommit.NewRequest("saboteur", func(ctx context.Context, tx *wtx) error {
			_, err := tx.ExecContext(ctx, "ROLLBACK")
			require.NoError(t, err)
			return fmt.Errorf("sabotaged")
		}),
	}
	s.committer.RunBatch(batch)
	storetest.RequireBatchFailed(t, s, before, p, batch[0].Wait(), batch[1].Wait())
}

// explainPlan is SQLite's plan for query, its steps joined by "; ".
func explainPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.reader.QueryxContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	var details []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		details = append(details, detail)
	}
	require.NoError(t, rows.Err())
	return strings.Join(details, "; ")
}

// TestQueryPlans pins the hot-path reads to their indexes: listing active
// tasks must never read finished ones, and filtered lists must not sort.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	storetest.SeedTasks(t, s, "ns", 20)

	plan := func(query string, args ...any) string {
		t.Helper()
		return explainPlan(t, s, query, args...)
	}

	active := plan(taskListActiveQuery, "", 100)
	require.Contains(t, active, "INDEX tasks_active_id", active)
	require.NotContains(t, active, "TEMP B-TREE", active)

	for _, tc := range storetest.TaskListPlans("ns") {
		query, args := taskListQuery(&tc.Params)
		got := plan(query, args...)
		require.Contains(t, got, "INDEX "+tc.Index, "%+v: %s", tc.Params, got)
		require.NotContains(t, got, "TEMP B-TREE", "%+v: %s", tc.Params, got)
	}

	// A search by id or idempotency key reads the two unique indexes, and
	// a creation-time range becomes an id range on the primary key.
	byKey, keyArgs := taskListQuery(&store.TaskListParams{Key: "k"})
	got := plan(byKey, keyArgs...)
	require.Contains(t, got, "MULTI-INDEX OR", got)
	require.NotContains(t, got, "SCAN tasks", got)
	byTime, timeArgs := taskListQuery(&store.TaskListParams{FromID: "a", BeforeID: "b", CreatedAfter: time.Unix(1, 0), CreatedBefore: time.Unix(2, 0)})
	got = plan(byTime, timeArgs...)
	require.Regexp(t, `SEARCH tasks USING PRIMARY KEY \(id>\? AND id<\?\)`, got)
	require.NotContains(t, got, "TEMP B-TREE", got)
	// A batch of ids reads each by the primary key.
	byIDs, idArgs := taskListQuery(&store.TaskListParams{IDs: []string{"a", "b", "c"}, Limit: 3})
	got = plan(byIDs, idArgs...)
	require.Contains(t, got, "SEARCH tasks USING PRIMARY KEY (id=?)", got)

	// Claiming merges the two indexes of work in id order and stops at the
	// limit: no finished task without a running step is read, nothing is
	// sorted.
	claim := plan(taskClaimSQL, 1, 0, 100)
	require.Contains(t, claim, "INDEX tasks_active_id", claim)
	require.Regexp(t, `SCAN s USING (COVERING )?INDEX steps_in_progress; SEARCH t USING PRIMARY KEY`, claim)
	require.NotContains(t, claim, "tasks_state_id", claim)
	require.NotContains(t, claim, "TEMP B-TREE", claim)

	steps := plan(`SELECT `+stepColumns+` FROM steps WHERE task_id IN (?, ?) ORDER BY task_id, position`, "a", "b")
	require.Contains(t, steps, "INDEX steps_task_id_position", steps)
	transitions := plan(`SELECT `+transitionColumns+` FROM transitions WHERE task_id = ? AND seq > ? ORDER BY seq`, "a", 0)
	require.Contains(t, transitions, "INDEX transitions_task_id_seq", transitions)
}

// holdWriteLock takes SQLite's write lock from a separate connection, as
// another process would, and returns a func that releases it (also run at
// cleanup, so a failing test never leaves the committer stuck).
func holdWriteLock(t testing.TB, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=10000")
	require.NoError(t, err)
	conn, err := db.Conn(t.Context())
	require.NoError(t, err)
	_, err = conn.ExecContext(t.Context(), "BEGIN IMMEDIATE")
	require.NoError(t, err)
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, err := conn.ExecContext(context.Background(), "ROLLBACK")
			require.NoError(t, err)
			require.NoError(t, conn.Close())
			require.NoError(t, db.Close())
		})
	}
	t.Cleanup(release)
	return release
}
