package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-go/tasker/state"
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

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t.Context(), t, func(t *testing.T) store.Store {
		return openStore(t, Config{})
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b.Context(), b, func(b *testing.B) store.Store {
		return openStore(b, Config{})
	})
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

			// Hold the writer's one connection (the committer is idle, so
			// it is free) and several reader connections at once, so each
			// is a distinct pooled connection.
			writer, err := s.writer.Connx(ctx)
			require.NoError(t, err)
			check(writer, "writer")
			var tempStore int
			require.NoError(t, writer.GetContext(ctx, &tempStore, "PRAGMA temp_store"))
			require.Equal(t, 2, tempStore, "writer temp_store is MEMORY, so savepoint journals stay off disk")
			require.NoError(t, writer.Close())

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

func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tasker.db")
	at := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)

	s, err := Open(ctx, Config{Path: path})
	require.NoError(t, err)
	tmpl, _, err := s.TemplateRegister(ctx, &store.TemplateRegisterParams{
		Namespace: "ns", Name: "orders", Version: "1.0.0", Digest: "d", Spec: json.RawMessage(`{"a":1}`), At: at,
	})
	require.NoError(t, err)
	p := newTaskParams("ns", at, "a", "b")
	task, _, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)
	trs, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{
		TaskID: task.ID, At: at.Add(time.Second),
		Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
		Steps: []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}},
	})
	require.NoError(t, err)
	steps, err := s.StepList(ctx, task.ID)
	require.NoError(t, err)
	task, err = s.TaskGet(ctx, task.ID)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// Reopening runs the migrations again (a no-op) and sees every write.
	s2 := openStore(t, Config{Path: path})
	gotTmpl, err := s2.TemplateGet(ctx, &store.TemplateGetParams{Namespace: "ns", Name: "orders", Version: "1.0.0"})
	require.NoError(t, err)
	require.Equal(t, tmpl, gotTmpl)
	gotTask, err := s2.TaskGet(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, task, gotTask)
	gotSteps, err := s2.StepList(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, steps, gotSteps)
	gotTrs, err := s2.TransitionList(ctx, &store.TransitionListParams{TaskID: task.ID})
	require.NoError(t, err)
	require.Equal(t, trs, gotTrs)

	// Sequence numbers continue after the reopen rather than restarting.
	more, err := s2.TaskAdvance(ctx, &store.TaskAdvanceParams{
		TaskID: task.ID, At: at.Add(2 * time.Second),
		Steps: []*store.StepChange{{StepID: p.Steps[0].ID, From: state.InProgress, To: state.Complete, ExpectAttempts: 1, Attempts: 1}},
	})
	require.NoError(t, err)
	require.Greater(t, more[0].Seq, trs[len(trs)-1].Seq)
	require.Equal(t, "a", more[0].StepName, "the stored step name fills an empty StepName")
}

func TestConcurrentWritesAreBatched(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	before := s.Stats()

	const workers, rounds = 50, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			p := newTaskParams(fmt.Sprintf("w%d", w), time.Now(), "flaky")
			if _, _, err := s.TaskCreate(ctx, p); err != nil {
				errs <- err
				return
			}
			st := p.Steps[0]
			for i := range rounds {
				_, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: time.Now(), Steps: []*store.StepChange{
					{StepID: st.ID, From: state.Pending, To: state.InProgress, ExpectAttempts: i, Attempts: i + 1},
					{StepID: st.ID, From: state.InProgress, To: state.Pending, ExpectAttempts: i + 1, Attempts: i + 1},
				}})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	stats := s.Stats()
	requests := stats.Requests - before.Requests
	commits := stats.Commits - before.Commits
	require.Equal(t, int64(workers*(rounds+1)), requests)
	require.Less(t, commits, requests, "some transactions must have carried several writes")
	t.Logf("%d writes in %d commits", requests, commits)
}

// TestBatchIsolatesFailures runs one batch by hand, so the good and bad
// requests are certainly in the same transaction.
func TestBatchIsolatesFailures(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	good := newTaskParams("ns", at, "a")
	_, _, err := s.TaskCreate(ctx, good)
	require.NoError(t, err)
	victim := newTaskParams("ns", at, "a")
	_, _, err = s.TaskCreate(ctx, victim)
	require.NoError(t, err)
	fresh := newTaskParams("ns", at, "a")
	before := s.Stats()

	start := func(p *store.TaskCreateParams, expect int) *store.TaskAdvanceParams {
		return &store.TaskAdvanceParams{
			TaskID: p.Task.ID, At: at.Add(time.Minute),
			Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
			Steps: []*store.StepChange{{StepID: p.Steps[0].ID, From: state.Pending, To: state.InProgress, ExpectAttempts: expect, Attempts: expect + 1}},
		}
	}
	batch := []*groupcommit.Request[applyFunc]{
		advanceRequest(start(good, 0)),
		advanceRequest(start(victim, 3)), // stale attempt count
		groupcommit.NewRequest("create", func(ctx context.Context, tx *wtx) error {
			_, _, err := createTask(ctx, tx, fresh)
			return err
		}),
	}
	s.committer.RunBatch(batch)

	require.NoError(t, batch[0].Wait())
	require.ErrorIs(t, batch[1].Wait(), store.ErrConflict)
	require.NoError(t, batch[2].Wait())
	after := s.Stats()
	require.Equal(t, before.Commits+1, after.Commits)
	require.Equal(t, before.Requests+3, after.Requests)

	requireTaskState(t, s, good.Task.ID, state.InProgress, 1)
	requireTaskState(t, s, victim.Task.ID, state.Pending, 0)
	requireTaskState(t, s, fresh.Task.ID, state.Pending, 0)
}

// TestBatchFailsTogether breaks the transaction from inside one request:
// then no request in the batch may report success, and none is stored.
func TestBatchFailsTogether(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newTaskParams("ns", at, "a")
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
	for _, req := range batch {
		err := req.Wait()
		require.ErrorContains(t, err, "batch of 2 writes failed", req.Op)
	}
	require.Equal(t, before, s.Stats())
	_, err := s.TaskGet(ctx, p.Task.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	// The committer's connection is usable again afterwards.
	_, created, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)
	require.True(t, created)
}

func TestContextCancellation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tasker.db")
	s := openStore(t, Config{Path: path, BusyTimeout: time.Minute})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// Another connection holds the write lock, so the committer sits in
	// BEGIN with the first request it took.
	release := holdWriteLock(t, path)

	takenCtx, cancelTaken := context.WithCancel(ctx)
	taken := newTaskParams("ns", at, "a")
	takenErr := make(chan error, 1)
	go func() {
		_, _, err := s.TaskCreate(takenCtx, taken)
		takenErr <- err
	}()
	require.Eventually(t, func() bool { return s.committer.Stats().Taken == 1 && s.committer.Stats().Queued == 0 }, 10*time.Second, time.Millisecond)

	// This one is still waiting for the committer: cancelling withdraws it.
	waitingCtx, cancelWaiting := context.WithCancel(ctx)
	withdrawn := newTaskParams("ns", at, "a")
	waitingErr := make(chan error, 1)
	go func() {
		_, _, err := s.TaskCreate(waitingCtx, withdrawn)
		waitingErr <- err
	}()
	require.Eventually(t, func() bool { return s.committer.Stats().Queued == 1 }, 10*time.Second, time.Millisecond)
	cancelWaiting()
	require.ErrorIs(t, <-waitingErr, context.Canceled)

	// Cancelling the taken request changes nothing: its caller hears the
	// real outcome once the batch commits.
	cancelTaken()
	release()
	require.NoError(t, <-takenErr)

	_, err := s.TaskGet(ctx, taken.Task.ID)
	require.NoError(t, err)
	_, err = s.TaskGet(ctx, withdrawn.Task.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Equal(t, int64(1), s.committer.Stats().Taken, "the withdrawn request never reached the committer")
}

// TestQueryPlans pins the hot-path reads to their indexes: listing active
// tasks must never read finished ones, and filtered lists must not sort.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	for i := range 20 {
		p := newTaskParams("ns", time.Now(), "a")
		if i%2 == 0 {
			p.Task.State = state.Complete
		}
		_, _, err := s.TaskCreate(ctx, p)
		require.NoError(t, err)
	}

	plan := func(query string, args ...any) string {
		t.Helper()
		rows, err := s.reader.QueryxContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
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

	active := plan(taskListActiveQuery, "", 100)
	require.Contains(t, active, "INDEX tasks_active_id", active)
	require.NotContains(t, active, "TEMP B-TREE", active)

	for _, tc := range []struct {
		params store.TaskListParams
		index  string
	}{
		{store.TaskListParams{State: state.Pending}, "tasks_state_id"},
		{store.TaskListParams{State: state.Pending, BeforeID: "z"}, "tasks_state_id"},
		{store.TaskListParams{Namespace: "ns", Name: "linear"}, "tasks_namespace_name_id"},
		{store.TaskListParams{Namespace: "ns", Name: "linear", BeforeID: "z"}, "tasks_namespace_name_id"},
	} {
		query, args := taskListQuery(&tc.params)
		got := plan(query, args...)
		require.Contains(t, got, "INDEX "+tc.index, "%+v: %s", tc.params, got)
		require.NotContains(t, got, "TEMP B-TREE", "%+v: %s", tc.params, got)
	}

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

func TestCloseIsIdempotentAndStopsWrites(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "tasker.db")})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, _, err = s.TaskCreate(t.Context(), newTaskParams("ns", time.Now(), "a"))
	require.ErrorIs(t, err, store.ErrClosed)
	_, err = s.TaskListActive(t.Context(), &store.TaskListActiveParams{})
	require.ErrorIs(t, err, store.ErrClosed)
}

func newTaskParams(ns string, at time.Time, steps ...string) *store.TaskCreateParams {
	id := uuid.Must(uuid.NewV7()).String()
	p := &store.TaskCreateParams{Task: &store.Task{
		ID: id, Namespace: ns, Name: "linear", Version: "1.0.0", State: state.Pending,
		Context: json.RawMessage(`{}`), IdentityKey: "key-" + id, CreatedAt: at, UpdatedAt: at,
	}}
	for i, name := range steps {
		p.Steps = append(p.Steps, &store.Step{
			ID: uuid.Must(uuid.NewV7()).String(), TaskID: id, Name: name, Position: i, Handler: "h",
			State: state.Pending, MaxAttempts: 3, Retryable: true, UpdatedAt: at,
		})
	}
	return p
}

func advanceRequest(p *store.TaskAdvanceParams) *groupcommit.Request[applyFunc] {
	return groupcommit.NewRequest("advance", func(ctx context.Context, tx *wtx) error {
		_, err := advanceTask(ctx, tx, p)
		return err
	})
}

func requireTaskState(t *testing.T, s *Store, id string, want state.State, attempts int) {
	t.Helper()
	task, err := s.TaskGet(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, want, task.State)
	steps, err := s.StepList(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, attempts, steps[0].Attempts)
	trs, err := s.TransitionList(t.Context(), &store.TransitionListParams{TaskID: id})
	require.NoError(t, err)
	require.Len(t, trs, 2*attempts)
}

// holdWriteLock takes SQLite's write lock from a separate connection, as
// another process would, and returns a func that releases it (also run at
// cleanup, so a failing test never leaves the committer stuck).
func holdWriteLock(t *testing.T, path string) (release func()) {
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
