package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
	"github.com/tasker-go/tasker/store/storetest"
)

// urlEnv names the database the tests use. Each test works in a schema of
// its own, created for it and dropped when it ends, so tests (and runs) in
// parallel never see each other's rows.
const urlEnv = "TASKER_TEST_POSTGRES"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv(urlEnv)
	if url == "" {
		tb.Skipf("PostgreSQL tests skipped: set %s to a database URL, e.g. "+
			"%s='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'", urlEnv, urlEnv)
	}
	return url
}

// newSchema names a fresh schema and drops it (with everything in it) when
// the test ends, after the stores using it are closed.
func newSchema(tb testing.TB) string {
	tb.Helper()
	url := testURL(tb)
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "tasker_test_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		require.NoError(tb, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		require.NoError(tb, err)
	})
	return schema
}

// openStore opens a store in a fresh schema unless cfg names one, and closes
// it when the test ends.
func openStore(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	if cfg.URL == "" {
		cfg.URL = testURL(tb)
	}
	if cfg.Schema == "" {
		cfg.Schema = newSchema(tb)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 4 // keep parallel tests well inside max_connections
	}
	s, err := Open(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, s.Close()) })
	return s
}

// adminConn is a plain connection into the store's schema, standing in for
// another process.
func adminConn(t *testing.T, schema string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(testURL(t))
	require.NoError(t, err)
	cfg.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, conn.Close(context.Background())) })
	return conn
}

func TestConformance(t *testing.T) {
	t.Parallel()
	testURL(t)
	storetest.Exercise(t.Context(), t, func(t *testing.T) store.Store {
		return openStore(t, Config{})
	})
}

func BenchmarkStore(b *testing.B) {
	testURL(b)
	storetest.Benchmark(b.Context(), b, func(b *testing.B) store.Store {
		return openStore(b, Config{})
	})
}

func TestOpenRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no URL":         {},
		"bad URL":        {URL: "postgres://[::1"},
		"negative batch": {URL: "postgres://127.0.0.1/x", MaxBatch: -1},
		"negative conns": {URL: "postgres://127.0.0.1/x", MaxConns: -1},
	} {
		_, err := Open(t.Context(), cfg)
		require.Error(t, err, name)
	}
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses connections at once.
	_, err := Open(t.Context(), Config{URL: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"})
	require.ErrorIs(t, err, store.ErrUnavailable)
}

func TestSessionSettings(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	ctx := t.Context()

	for name, pool := range map[string]interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}{"writer": s.writer, "reader": s.reader} {
		var current, syncCommit string
		require.NoError(t, pool.QueryRow(ctx, "SELECT current_schema()").Scan(&current), name)
		require.Equal(t, schema, current, name)
		require.NoError(t, pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&syncCommit), name)
		require.NotEqual(t, "off", syncCommit, "%s: commits must wait for the WAL flush", name)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	at := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)

	s, err := Open(ctx, Config{URL: testURL(t), Schema: schema})
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
	s2 := openStore(t, Config{Schema: schema})
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

// TestConcurrentOpensMigrateOnce starts several stores on one new schema at
// once, as coordinators starting together would: the advisory lock lets one
// migrate while the others wait, then find nothing to do.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	const opens = 5
	stores := make([]*Store, opens)
	errs := make([]error, opens)
	var wg sync.WaitGroup
	for i := range opens {
		wg.Go(func() {
			stores[i], errs[i] = Open(ctx, Config{URL: testURL(t), Schema: schema, MaxConns: 2})
		})
	}
	wg.Wait()
	for i, s := range stores {
		require.NoError(t, errs[i], "open %d", i)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
	}

	conn := adminConn(t, schema)
	var applied int
	require.NoError(t, conn.QueryRow(ctx,
		"SELECT count(*) FROM goose_db_version WHERE version_id > 0 AND is_applied").Scan(&applied))
	files, err := migrationFiles.ReadDir("migrations")
	require.NoError(t, err)
	require.Equal(t, len(files), applied, "each migration is recorded once")

	// Every store works on the one set of tables.
	p := newTaskParams("ns", time.Now(), "a")
	_, created, err := stores[0].TaskCreate(ctx, p)
	require.NoError(t, err)
	require.True(t, created)
	for i, s := range stores {
		_, created, err := s.TaskCreate(ctx, p)
		require.NoError(t, err, "store %d", i)
		require.False(t, created, "store %d sees the task by its identity key", i)
	}

	// Opening again is a no-op.
	again := openStore(t, Config{Schema: schema})
	_, err = again.TaskGet(ctx, p.Task.ID)
	require.NoError(t, err)
	require.NoError(t, conn.QueryRow(ctx,
		"SELECT count(*) FROM goose_db_version WHERE version_id > 0 AND is_applied").Scan(&applied))
	require.Equal(t, len(files), applied)
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

// TestBatchIsolatesFailures runs one batch by hand, so the good and refused
// requests are certainly in the same transaction, with a refused request
// between good ones and one last.
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
	dupe := newTaskParams("ns", at, "a", "a") // two steps with one name
	before := s.Stats()

	start := func(p *store.TaskCreateParams, expect int) *store.TaskAdvanceParams {
		return &store.TaskAdvanceParams{
			TaskID: p.Task.ID, At: at.Add(time.Minute),
			Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
			Steps: []*store.StepChange{{StepID: p.Steps[0].ID, From: state.Pending, To: state.InProgress, ExpectAttempts: expect, Attempts: expect + 1}},
		}
	}
	var created *createResult
	batch := []*groupcommit.Request[queueFunc]{
		advanceRequest(start(victim, 3)), // stale attempt count, first in the batch
		advanceRequest(start(good, 0)),
		advanceRequest(start(victim, 7)), // stale again, between good ones
		groupcommit.NewRequest("create", func(p *pipe) {
			created = queueCreate(p, fresh.Task.ID, createArgs(fresh))
		}),
		groupcommit.NewRequest("dupe", func(p *pipe) {
			queueCreate(p, dupe.Task.ID, createArgs(dupe))
		}),
	}
	s.committer.RunBatch(batch)

	require.ErrorIs(t, batch[0].Wait(), store.ErrConflict)
	require.NoError(t, batch[1].Wait())
	require.ErrorIs(t, batch[2].Wait(), store.ErrConflict)
	require.NoError(t, batch[3].Wait())
	require.True(t, created.created)
	require.Equal(t, fresh.Task.ID, created.task.ID)
	dupeErr := batch[4].Wait()
	require.ErrorContains(t, dupeErr, "23505", "a unique violation fails its own request")
	require.NotErrorIs(t, dupeErr, store.ErrUnavailable)
	after := s.Stats()
	require.Equal(t, before.Commits+1, after.Commits)
	require.Equal(t, before.Requests+int64(len(batch)), after.Requests)

	requireTaskState(t, s, good.Task.ID, state.InProgress, 1)
	requireTaskState(t, s, victim.Task.ID, state.Pending, 0)
	requireTaskState(t, s, fresh.Task.ID, state.Pending, 0)
	_, err = s.TaskGet(ctx, dupe.Task.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// TestBatchFailsTogether kills the committer's connection from inside one
// request: then no request in the batch may report success, none is
// stored, all are unavailable (worth retrying), and the store reconnects.
func TestBatchFailsTogether(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newTaskParams("ns", at, "a")
	before := s.Stats()

	batch := []*groupcommit.Request[queueFunc]{
		groupcommit.NewRequest("create", func(pp *pipe) {
			queueCreate(pp, p.Task.ID, createArgs(p))
		}),
		groupcommit.NewRequest("saboteur", func(pp *pipe) {
			pp.exec("SELECT pg_terminate_backend(pg_backend_pid())")
		}),
	}
	s.committer.RunBatch(batch)
	for _, req := range batch {
		err := req.Wait()
		require.ErrorContains(t, err, "batch of 2 writes failed", req.Op)
		require.ErrorIs(t, err, store.ErrUnavailable, req.Op)
	}
	require.Equal(t, before, s.Stats())
	_, err := s.TaskGet(ctx, p.Task.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	// The committer gets a new connection, with its statements prepared.
	_, created, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)
	require.True(t, created)
}

// TestReadOnlyIsUnavailable: a write the server refuses for want of a
// writable database is ErrUnavailable (the same call may succeed later, on
// the new primary), not a conflict or a bug.
func TestReadOnlyIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	conn, err := s.writer.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET default_transaction_read_only = on")
	require.NoError(t, err)
	conn.Release()

	p := newTaskParams("ns", time.Now(), "a")
	_, _, err = s.TaskCreate(ctx, p)
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorContains(t, err, "25006")

	conn, err = s.writer.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET default_transaction_read_only = off")
	require.NoError(t, err)
	conn.Release()
	_, created, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)
	require.True(t, created)
}

func TestContextCancellation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// Another session locks the tasks table, so the committer's batch waits
	// with the first request it took.
	locker := adminConn(t, schema)
	tx, err := locker.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
	require.NoError(t, err)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { require.NoError(t, tx.Rollback(context.Background())) }) }
	t.Cleanup(release)

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

	_, err = s.TaskGet(ctx, taken.Task.ID)
	require.NoError(t, err)
	_, err = s.TaskGet(ctx, withdrawn.Task.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Equal(t, int64(1), s.committer.Stats().Taken, "the withdrawn request never reached the committer")
}

// TestQueryPlans pins the hot-path reads to their indexes. Sequential scans
// are switched off for the check: on a table this small the planner would
// rightly prefer one, and the question is whether an index can serve the
// query at all. Listing active tasks must use the partial index, so resuming
// never reads finished tasks.
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	for i := range 20 {
		p := newTaskParams("ns", time.Now(), "a")
		if i%2 == 0 {
			p.Task.State = state.Complete
		}
		_, _, err := s.TaskCreate(ctx, p)
		require.NoError(t, err)
	}
	conn := adminConn(t, schema)
	_, err := conn.Exec(ctx, "SET enable_seqscan = off")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "ANALYZE")
	require.NoError(t, err)

	plan := func(query string, args ...any) string {
		t.Helper()
		rows, err := conn.Query(ctx, "EXPLAIN "+query, args...)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return strings.Join(lines, "\n")
	}

	active := plan(taskListActiveQuery, "", 100)
	require.Contains(t, active, "tasks_active_id", active)
	require.NotContains(t, active, "Sort", active)

	for _, tc := range []struct {
		params store.TaskListParams
		index  string
	}{
		{store.TaskListParams{}, "tasks_pkey"},
		{store.TaskListParams{BeforeID: "z"}, "tasks_pkey"},
		{store.TaskListParams{State: state.Pending}, "tasks_state_id"},
		{store.TaskListParams{State: state.Pending, BeforeID: "z"}, "tasks_state_id"},
		{store.TaskListParams{Namespace: "ns", Name: "linear"}, "tasks_namespace_name_id"},
		{store.TaskListParams{Namespace: "ns", Name: "linear", BeforeID: "z"}, "tasks_namespace_name_id"},
	} {
		query, args := taskListQuery(&tc.params)
		got := plan(query, args...)
		require.Contains(t, got, tc.index, "%+v: %s", tc.params, got)
		require.NotContains(t, got, "Sort", "%+v: %s", tc.params, got)
	}

	steps := plan(`SELECT `+stepColumns+` FROM steps WHERE task_id = ANY($1::text[]) ORDER BY task_id, position`,
		[]string{"a", "b"})
	require.Contains(t, steps, "steps_task_id_position", steps)
	transitions := plan(`SELECT `+transitionColumns+` FROM transitions WHERE task_id = $1 AND seq > $2 ORDER BY seq`, "a", 0)
	require.Contains(t, transitions, "transitions_task_id_seq", transitions)
}

func TestCloseIsIdempotentAndStopsWrites(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), Config{URL: testURL(t), Schema: newSchema(t)})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, _, err = s.TaskCreate(t.Context(), newTaskParams("ns", time.Now(), "a"))
	require.ErrorIs(t, err, store.ErrClosed)
	_, err = s.TaskListActive(t.Context(), &store.TaskListActiveParams{})
	require.ErrorIs(t, err, store.ErrClosed)
}

// TestIdempotentWritesRaceAcrossCoordinators: two coordinators insert the
// same identity key (or template version) at once. The second one's
// statement starts before the first commits, so ON CONFLICT waits for the
// first, then skips the insert, and the row it now conflicts with is not in
// the statement's snapshot. The store must still answer with that row.
func TestIdempotentWritesRaceAcrossCoordinators(t *testing.T) {
	t.Parallel()
	// first queues the insert of coordinator A; second makes the same call
	// on coordinator B and reports what it got back.
	type raceCase struct {
		name   string
		first  func(p *pipe)
		second func(ctx context.Context, s *Store) (id string, created bool, err error)
		want   string
	}
	var cases []raceCase

	first := newTaskParams("ns", time.Now(), "a")
	second := newTaskParams("ns", time.Now(), "a", "b")
	second.Task.IdentityKey = first.Task.IdentityKey
	cases = append(cases, raceCase{
		name:  "TaskCreate",
		first: func(p *pipe) { queueCreate(p, first.Task.ID, createArgs(first)) },
		second: func(ctx context.Context, s *Store) (string, bool, error) {
			task, created, err := s.TaskCreate(ctx, second)
			if err != nil {
				return "", false, err
			}
			return task.ID, created, nil
		},
		want: first.Task.ID,
	})

	tmpl := &store.TemplateRegisterParams{Namespace: "ns", Name: "orders", Version: "1.0.0", Digest: "d1",
		Spec: json.RawMessage(`{}`), At: time.Now()}
	cases = append(cases, raceCase{
		name: "TemplateRegister",
		first: func(p *pipe) {
			p.exec(stmtRegisterTemplate, tmpl.Namespace, tmpl.Name, tmpl.Version, tmpl.Digest,
				string(tmpl.Spec), toNanos(tmpl.At))
		},
		second: func(ctx context.Context, s *Store) (string, bool, error) {
			got, created, err := s.TemplateRegister(ctx, tmpl)
			if err != nil {
				return "", false, err
			}
			return got.Digest, created, nil
		},
		want: "d1",
	})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			schema := newSchema(t)
			a := openStore(t, Config{Schema: schema})
			b := openStore(t, Config{Schema: schema})
			admin := adminConn(t, schema)
			bPid := writerPID(t, b)

			// A's batch inserts, then waits, so its insert stays
			// uncommitted.
			commitFirst := holdBatch(t, a, admin, tc.first)

			// B's statement now waits for A's uncommitted row.
			type answer struct {
				id      string
				created bool
				err     error
			}
			bDone := make(chan answer, 1)
			go func() {
				id, created, err := tc.second(ctx, b)
				bDone <- answer{id, created, err}
			}()
			waitUntil(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", bPid)

			require.NoError(t, commitFirst())
			got := <-bDone
			require.NoError(t, got.err)
			require.False(t, got.created)
			require.Equal(t, tc.want, got.id)
		})
	}
}

// holdBatch runs work in a batch of s's committer that then waits for an
// advisory lock the test holds, so what work wrote stays uncommitted (its
// row locks held) until the returned function releases the batch; that
// function waits for the commit and returns work's outcome.
func holdBatch(t *testing.T, s *Store, admin *pgx.Conn, work queueFunc) (commit func() error) {
	t.Helper()
	key := time.Now().UnixNano() & 0x7fffffff
	_, err := admin.Exec(t.Context(), "SELECT pg_advisory_lock($1)", key)
	require.NoError(t, err)
	batch := []*groupcommit.Request[queueFunc]{
		groupcommit.NewRequest("held", work),
		groupcommit.NewRequest("hold", func(p *pipe) {
			p.exec("SELECT pg_advisory_xact_lock($1)", key)
		}),
	}
	done := make(chan struct{})
	go func() {
		s.committer.RunBatch(batch)
		close(done)
	}()
	waitUntil(t, admin, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted", key)
	return func() error {
		t.Helper()
		_, err := admin.Exec(t.Context(), "SELECT pg_advisory_unlock($1)", key)
		require.NoError(t, err)
		<-done
		require.NoError(t, batch[1].Wait())
		return batch[0].Wait()
	}
}

// TestEmptyAdvance: an advance with no changes writes nothing, but still
// tells a missing task apart.
func TestEmptyAdvance(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	p := newTaskParams("ns", time.Now(), "a")
	_, _, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)

	trs, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: time.Now()})
	require.NoError(t, err)
	require.Empty(t, trs)
	requireTaskState(t, s, p.Task.ID, state.Pending, 0)

	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: uuid.NewString(), At: time.Now()})
	require.ErrorIs(t, err, store.ErrNotFound)
}

// TestConflictMessages: a refused change says what it expected and what it
// found, so an operator reading the log can tell a stale attempt from a
// step that moved on.
func TestConflictMessages(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	p := newTaskParams("ns", time.Now(), "a")
	_, _, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)

	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: time.Now(), Steps: []*store.StepChange{
		{StepID: p.Steps[0].ID, StepName: "a", From: state.InProgress, To: state.Complete, ExpectAttempts: 2, Attempts: 2},
	}})
	require.ErrorIs(t, err, store.ErrConflict)
	require.ErrorContains(t, err, "expected in_progress with 2 attempts, found pending with 0")

	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: time.Now(),
		Task: &store.TaskChange{From: state.InProgress, To: state.Complete}})
	require.ErrorIs(t, err, store.ErrConflict)
	require.ErrorContains(t, err, "task is pending, not in_progress")
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "53100"}, true},
		{&pgconn.PgError{Code: "25006"}, true},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "40P01"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "TK409"}, false},
		{&pgconn.PgError{Code: "TK410"}, false},
		{context.Canceled, false},
		{errors.New("anything else"), false},
	} {
		got := classify(fmt.Errorf("wrapped: %w", tc.err))
		require.Equal(t, tc.unavailable, errors.Is(got, store.ErrUnavailable), "%v", tc.err)
		require.ErrorIs(t, got, tc.err)
	}
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

func advanceRequest(p *store.TaskAdvanceParams) *groupcommit.Request[queueFunc] {
	return groupcommit.NewRequest("advance", func(pp *pipe) {
		queueAdvance(pp, p)
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
