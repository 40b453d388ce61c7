package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
// explainPlan is PostgreSQL's plan for query, one line per node.
func explainPlan(t *testing.T, conn *pgx.Conn, query string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(t.Context(), "EXPLAIN "+query, args...)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

func adminConn(tb testing.TB, schema string) *pgx.Conn {
	tb.Helper()
	cfg, err := pgx.ParseConfig(testURL(tb))
	require.NoError(tb, err)
	cfg.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, conn.Close(context.Background())) })
	return conn
}

// newDatabase is the suite's factory: a fresh schema, opened by as many
// stores as a test asks for.
func newDatabase(tb testing.TB) storetest.Opener {
	schema := newSchema(tb)
	return func(tb testing.TB) store.Store {
		return testStore{Store: openStore(tb, Config{Schema: schema}), schema: schema}
	}
}

// testStore adds what the suite's optional cases need.
type testStore struct {
	*Store
	schema string
}

// ServerCPU implements storetest.ServerCPUReader: the CPU time of the
// writer's backend process, read from /proc, since the database under test
// runs on this machine. It is 0 when the backend is not visible.
func (s testStore) ServerCPU(tb testing.TB) time.Duration {
	tb.Helper()
	conn, err := s.writer.Acquire(context.Background())
	require.NoError(tb, err)
	pid := conn.Conn().PgConn().PID()
	conn.Release()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which ends at the last ')': utime
	// and stime are the 14th and 15th of the whole line, in clock ticks
	// (100 a second on Linux).
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	require.NoError(tb, err)
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	require.NoError(tb, err)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// HoldWrites implements storetest.WriteHolder: another session locks every
// table the store writes against writes (reads still pass), so the
// committer's batch waits at its first write until release.
func (s testStore) HoldWrites(tb testing.TB) (release func()) {
	tb.Helper()
	ctx := context.Background()
	tx, err := adminConn(tb, s.schema).Begin(ctx)
	require.NoError(tb, err)
	_, err = tx.Exec(ctx, "LOCK TABLE templates, tasks, steps, transitions, leases IN EXCLUSIVE MODE")
	require.NoError(tb, err)
	var once sync.Once
	release = func() { once.Do(func() { require.NoError(tb, tx.Rollback(ctx)) }) }
	tb.Cleanup(release)
	return release
}

func TestConformance(t *testing.T) {
	t.Parallel()
	testURL(t)
	storetest.Exercise(t.Context(), t, newDatabase)
}

func BenchmarkStore(b *testing.B) {
	testURL(b)
	storetest.Benchmark(b.Context(), b, newDatabase)
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
	p := storetest.TaskParams("ns", time.Now(), "a")
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

// TestBatchFailsTogether kills the committer's connection from inside one
// request: then no request in the batch may report success, none is
// stored, all are unavailable (worth retrying), and the store reconnects.
func TestBatchFailsTogether(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := storetest.TaskParams("ns", at, "a")
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
	errs := []error{batch[0].Wait(), batch[1].Wait()}
	for _, err := range errs {
		require.ErrorIs(t, err, store.ErrUnavailable)
	}
	// The committer gets a new connection, with its statements prepared.
	storetest.RequireBatchFailed(t, s, before, p, errs...)
}

// TestRefusedRequestFailsAlone: a batch runs without savepoints first; a
// request the server refuses in the middle aborts that run, and the batch
// is run again with savepoints, so the refused request fails alone, with
// its own error, and the requests before and after it commit once each.
func TestRefusedRequestFailsAlone(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stale := storetest.TaskParams("ns", at, "a")
	_, _, err := s.TaskCreate(ctx, stale)
	require.NoError(t, err)
	before, after := storetest.TaskParams("ns", at, "a"), storetest.TaskParams("ns", at, "a")

	var refusedOut []*store.Transition
	batch := []*groupcommit.Request[queueFunc]{
		groupcommit.NewRequest("before", func(pp *pipe) { queueCreate(pp, before.Task.ID, createArgs(before)) }),
		groupcommit.NewRequest("refused", func(pp *pipe) {
			// The step is pending, not in_progress.
			refusedOut = queueAdvance(pp, &store.TaskAdvanceParams{TaskID: stale.Task.ID, At: at, Steps: []*store.StepChange{{
				StepID: stale.Steps[0].ID, StepName: "a", From: state.InProgress, To: state.Complete, ExpectAttempts: 1, Attempts: 1}}})
		}),
		groupcommit.NewRequest("after", func(pp *pipe) { queueCreate(pp, after.Task.ID, createArgs(after)) }),
	}
	s.committer.RunBatch(batch)
	require.NoError(t, batch[0].Wait())
	require.ErrorIs(t, batch[1].Wait(), store.ErrConflict)
	require.NoError(t, batch[2].Wait())
	require.Len(t, refusedOut, 1)

	for _, p := range []*store.TaskCreateParams{before, after} {
		trs, err := s.TransitionList(ctx, &store.TransitionListParams{TaskID: p.Task.ID})
		require.NoError(t, err)
		require.Len(t, trs, len(p.Transitions), "task %s stored once", p.Task.ID)
	}
	storetest.RequireTaskState(t, s, stale.Task.ID, state.Pending, 0)
}

// TestSavepointRunIsSplit: a batch larger than savepointRun that has a
// refused request is run again with savepoints in transactions of at most
// savepointRun requests (so no transaction holds more subtransactions than
// a backend caches); every request but the refused ones commits once.
func TestSavepointRunIsSplit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stale := storetest.TaskParams("ns", at, "a")
	_, _, err := s.TaskCreate(ctx, stale)
	require.NoError(t, err)

	// Prepared by name before the batch, as the committer's own statements
	// are: pgx would otherwise prepare it in the middle of the batch, which a
	// transaction aborted by a refusal does not allow.
	conn, err := s.writer.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Conn().Prepare(ctx, "test_txid", "SELECT txid_current()")
	conn.Release()
	require.NoError(t, err)

	const n = 2*savepointRun + 10
	refused := map[int]bool{3: true, savepointRun + 5: true}
	params := make([]*store.TaskCreateParams, n)
	xids := make([]int64, n)
	batch := make([]*groupcommit.Request[queueFunc], n)
	for i := range batch {
		if refused[i] {
			batch[i] = groupcommit.NewRequest("refused", func(pp *pipe) {
				queueRefusedAdvance(pp, stale, at)
			})
			continue
		}
		params[i] = storetest.TaskParams("ns", at, "a")
		batch[i] = groupcommit.NewRequest("create", func(pp *pipe) {
			queueCreate(pp, params[i].Task.ID, createArgs(params[i]))
			pp.query("test_txid", nil, func(r pgx.Rows) error { return r.Scan(&xids[i]) }, nil)
		})
	}
	s.committer.RunBatch(batch)

	perXid := map[int64]int{}
	for i, req := range batch {
		if refused[i] {
			require.ErrorIs(t, req.Wait(), store.ErrConflict, "request %d", i)
			continue
		}
		require.NoError(t, req.Wait(), "request %d", i)
		perXid[xids[i]]++
		trs, err := s.TransitionList(ctx, &store.TransitionListParams{TaskID: params[i].Task.ID})
		require.NoError(t, err)
		require.Len(t, trs, len(params[i].Transitions), "task %d stored once", i)
	}
	require.Len(t, perXid, 3, "%d requests in transactions of at most %d", n, savepointRun)
	for xid, count := range perXid {
		require.LessOrEqual(t, count, savepointRun, "transaction %d", xid)
	}
	storetest.RequireTaskState(t, s, stale.Task.ID, state.Pending, 0)
}

// TestSavepointRunFailingLaterKeepsEarlierCommits: when a later transaction
// of a split run with savepoints fails (here its connection dies), the
// requests of the transactions before it stay committed and say so, and
// every request from the failed one on fails as unavailable, stored nowhere.
func TestSavepointRunFailingLaterKeepsEarlierCommits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stale := storetest.TaskParams("ns", at, "a")
	_, _, err := s.TaskCreate(ctx, stale)
	require.NoError(t, err)

	const n = 2*savepointRun + 10
	const refusedAt, sabotageAt = 3, savepointRun + 5
	params := make([]*store.TaskCreateParams, n)
	batch := make([]*groupcommit.Request[queueFunc], n)
	for i := range batch {
		switch i {
		case refusedAt:
			batch[i] = groupcommit.NewRequest("refused", func(pp *pipe) {
				queueRefusedAdvance(pp, stale, at)
			})
		case sabotageAt:
			batch[i] = groupcommit.NewRequest("saboteur", func(pp *pipe) {
				pp.exec("SELECT pg_terminate_backend(pg_backend_pid())")
			})
		default:
			params[i] = storetest.TaskParams("ns", at, "a")
			batch[i] = groupcommit.NewRequest("create", func(pp *pipe) {
				queueCreate(pp, params[i].Task.ID, createArgs(params[i]))
			})
		}
	}
	s.committer.RunBatch(batch)

	for i, req := range batch {
		err := req.Wait()
		switch {
		case i == refusedAt:
			require.ErrorIs(t, err, store.ErrConflict)
		case i < savepointRun:
			require.NoError(t, err, "request %d", i)
			storetest.RequireTaskState(t, s, params[i].Task.ID, state.Pending, 0)
		default:
			require.ErrorIs(t, err, store.ErrUnavailable, "request %d", i)
			if params[i] != nil {
				_, err := s.TaskGet(ctx, params[i].Task.ID)
				require.ErrorIs(t, err, store.ErrNotFound, "request %d", i)
			}
		}
	}
}

// queueRefusedAdvance queues an advance the server refuses: it completes
// stale's first step as if in progress, but the step is pending.
func queueRefusedAdvance(pp *pipe, stale *store.TaskCreateParams, at time.Time) {
	queueAdvance(pp, &store.TaskAdvanceParams{TaskID: stale.Task.ID, At: at, Steps: []*store.StepChange{{
		StepID: stale.Steps[0].ID, StepName: "a", From: state.InProgress, To: state.Complete, ExpectAttempts: 1, Attempts: 1}}})
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

	p := storetest.TaskParams("ns", time.Now(), "a")
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
	storetest.SeedTasks(t, s, "ns", 20)
	conn := adminConn(t, schema)
	_, err := conn.Exec(ctx, "SET enable_seqscan = off")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "ANALYZE")
	require.NoError(t, err)

	plan := func(query string, args ...any) string {
		t.Helper()
		return explainPlan(t, conn, query, args...)
	}

	active := plan(taskListActiveQuery, "", 100)
	require.Contains(t, active, "tasks_active_id", active)
	require.NotContains(t, active, "Sort", active)

	cases := append(storetest.TaskListPlans("ns"),
		storetest.TaskListPlan{Params: store.TaskListParams{}, Index: "tasks_pkey"},
		storetest.TaskListPlan{Params: store.TaskListParams{BeforeID: "z"}, Index: "tasks_pkey"},
		// A creation-time range comes with the id range it implies.
		storetest.TaskListPlan{Params: store.TaskListParams{FromID: "a", BeforeID: "z", CreatedAfter: time.Unix(1, 0), CreatedBefore: time.Unix(2, 0)}, Index: "tasks_pkey"})
	for _, tc := range cases {
		query, args := taskListQuery(&tc.Params)
		got := plan(query, args...)
		require.Contains(t, got, tc.Index, "%+v: %s", tc.Params, got)
		require.NotContains(t, got, "Sort", "%+v: %s", tc.Params, got)
	}

	// A search by id or idempotency key reads the two unique indexes.
	byKey, keyArgs := taskListQuery(&store.TaskListParams{Key: "k"})
	got := plan(byKey, keyArgs...)
	require.Contains(t, got, "tasks_pkey", got)
	require.Contains(t, got, "tasks_identity_key", got)
	require.NotContains(t, got, "Seq Scan", got)

	steps := plan(`SELECT `+stepColumns+` FROM steps WHERE task_id = ANY($1::text[]) ORDER BY task_id, position`,
		[]string{"a", "b"})
	require.Contains(t, steps, "steps_task_id_position", steps)
	transitions := plan(`SELECT `+transitionColumns+` FROM transitions WHERE task_id = $1 AND seq > $2 ORDER BY seq`, "a", 0)
	require.Contains(t, transitions, "transitions_task_id_seq", transitions)
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

	first := storetest.TaskParams("ns", time.Now(), "a")
	second := storetest.TaskParams("ns", time.Now(), "a", "b")
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
