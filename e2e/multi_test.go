//go:build unix

package e2e

// TestMultiCoordinatorPostgres runs three coordinator processes on one
// PostgreSQL schema and two executors registered with all three, submits
// 1,000 tasks round-robin across the coordinators, and meanwhile kill -9s
// one coordinator and SIGSTOPs another for three lease lifetimes. The
// survivors must take over the dead one's tasks, the paused one must find
// its lease lost and its writes refused once it runs again, and the stored
// history must show every task complete exactly once.
//
//	TASKER_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//		go test -count=1 -run TestMultiCoordinatorPostgres -v ./e2e/

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// envTestPostgres names the database the test runs on; unset, it skips.
const envTestPostgres = "TASKER_TEST_POSTGRES"

// The size and pace of the run. The lease is short so takeovers happen
// within the test's time budget; the faults all fall inside the submission
// window, while tasks are being created and run.
const (
	multiTasks         = 1000
	multiCoordinators  = 3
	multiExecutors     = 2
	multiCapacity      = 8
	multiLeaseTTL      = 2 * time.Second
	multiExecutorGrace = time.Second
	multiSubmitWorkers = 16
	multiSubmitWindow  = 3 * time.Second
	// multiKillAt and multiPauseAt are offsets from the first submission;
	// the pause lasts three lease lifetimes, long enough for the others to
	// see the lease expire and take the tasks over.
	multiKillAt  = time.Second
	multiPauseAt = 2 * time.Second
	multiPause   = 3 * multiLeaseTTL
	// A fault waits, for at most multiLoadWait past its offset, until its
	// victim owns multiLoad unfinished tasks, so it hits work in progress
	// however fast this machine runs the tasks.
	multiLoad     = 20
	multiLoadWait = 2 * time.Second
	// multiCreateTimeout bounds one CreateTask attempt: a paused
	// coordinator accepts the call but never answers it.
	multiCreateTimeout = 2 * time.Second
	multiCreateTries   = 40
	// multiSettle bounds the wait, after the last submission, for every
	// task to reach a terminal state.
	multiSettle = 2 * time.Minute
)

// multiShapes are the five reference shapes, cycled through by the tasks.
var multiShapes = []string{"linear_workflow", "diamond_workflow", "tree_workflow", "parallel_merge_workflow", "mixed_workflow"}

// multiCoordinator is one coordinator process and a client for it.
type multiCoordinator struct {
	id, addr, httpAddr string
	proc               *process
	client             coordinatorv1.CoordinatorServiceClient
}

// multiSubmission is one submitted task, as the create that succeeded
// answered it.
type multiSubmission struct {
	key, shape, id string
	// via is the index of the coordinator that answered the create.
	via int
}

// multiFaults records when the faults happened and what they left behind.
type multiFaults struct {
	killedAt, pausedAt, resumedAt time.Time
	// orphaned counts the unfinished tasks the killed (paused) coordinator
	// owned when it went down; takeover is how long until none were left
	// under its lease (zero if that was not seen).
	killedOrphans, pausedOrphans   int
	killedTakeover, pausedTakeover time.Duration
}

func TestMultiCoordinatorPostgres(t *testing.T) {
	// Not parallel: with two-second leases, sharing two cores with other
	// process-heavy tests would turn CPU starvation into lease losses on
	// every coordinator, which says nothing about this scenario.
	baseURL := os.Getenv(envTestPostgres)
	if baseURL == "" {
		t.Skipf("%s is not set: give it a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run three coordinators on one database", envTestPostgres)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	schema := fmt.Sprintf("tasker_multi_%d", time.Now().UnixNano())
	pool := multiCreateSchema(ctx, t, baseURL, schema)
	dbURL, err := withSearchPath(baseURL, schema)
	require.NoError(t, err)

	coords := make([]*multiCoordinator, multiCoordinators)
	for i := range coords {
		c := &multiCoordinator{id: fmt.Sprintf("multi-c%d", i+1), addr: freeAddr(t), httpAddr: freeAddr(t)}
		c.proc = start(t, c.id, "coordinator", "--listen", c.addr, "--db", dbURL, "--id", c.id,
			"--lease-ttl", multiLeaseTTL.String(), "--executor-grace", multiExecutorGrace.String(),
			"--http-listen", c.httpAddr, "--log-level", "info")
		conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		c.client = coordinatorv1.NewCoordinatorServiceClient(conn)
		coords[i] = c
	}
	// Runs before the processes' own cleanups (LIFO): a stopped process
	// would ignore the interrupt they send.
	t.Cleanup(func() {
		for _, c := range coords {
			_ = c.proc.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	for _, c := range coords {
		require.Eventually(t, func() bool {
			_, err := c.client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
			return err == nil
		}, 60*time.Second, 100*time.Millisecond, "coordinator %s did not start", c.id)
	}
	multiCheckSchema(ctx, t, pool, schema, coords)

	addrs := make([]string, len(coords))
	for i, c := range coords {
		addrs[i] = c.addr
	}
	for i := 1; i <= multiExecutors; i++ {
		start(t, fmt.Sprintf("multi-exec-%d", i), "executor", "--listen", freeAddr(t),
			"--coordinator", addrs[0], "--coordinators", strings.Join(addrs[1:], ","),
			"--id", fmt.Sprintf("multi-exec-%d", i), "--capacity", fmt.Sprint(multiCapacity), "--log-level", "info")
	}
	for _, c := range coords {
		require.Eventually(t, func() bool {
			resp, err := c.client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
			if err != nil {
				return false
			}
			n := 0
			for _, e := range resp.GetExecutors() {
				if e.GetConnected() {
					n++
				}
			}
			return n == multiExecutors
		}, 60*time.Second, 100*time.Millisecond, "executors did not connect to %s", c.id)
	}

	// Templates live in the database: registered through one coordinator,
	// every other one finds them.
	files := make([]string, len(multiShapes))
	for i, s := range multiShapes {
		files[i] = filepath.Join(repoRoot(), "examples", "templates", s+".yaml")
	}
	cl := &cluster{t: t, coord: coords[0].addr}
	out := cl.tasker(append([]string{"template", "apply"}, files...)...)
	require.Equal(t, len(multiShapes), strings.Count(out, "registered "), out)
	for _, c := range coords[1:] {
		for _, s := range multiShapes {
			_, err := c.client.GetTemplate(ctx, &coordinatorv1.GetTemplateRequest{Namespace: "tasker", Name: s})
			require.NoError(t, err, "%s does not see template %s registered through %s", c.id, s, coords[0].id)
		}
	}

	began := time.Now()
	var (
		faults   multiFaults
		faultsWG sync.WaitGroup
	)
	faultsWG.Go(func() { faults = multiRunFaults(ctx, t, pool, coords, began) })
	subs, retries, err := multiSubmitAll(ctx, coords, schema, began)
	// The faults end before anything can fail the test, so no signal is
	// sent, nor t used, after the cleanups start.
	faultsWG.Wait()
	require.NoError(t, err)
	require.Len(t, subs, multiTasks)

	// Every task terminal, as any live coordinator reports it. What is
	// stuck is logged with its owner, and the audit still runs, so a
	// failure comes with its evidence.
	live := []*multiCoordinator{coords[0], coords[1]}
	unfinished := multiWaitTerminal(ctx, t, live, multiSettle)
	if unfinished != 0 {
		multiDumpStuck(ctx, t, pool)
	}
	took := time.Since(began)

	audit, err := multiAuditStore(ctx, baseURL, schema, subs)
	require.NoError(t, err)
	for _, v := range audit.violations {
		t.Log("violation:", v)
	}

	// The paused coordinator finds its lease gone once it runs again.
	var leaseLost, fenced float64
	paused := coords[1]
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		m, err := scrapeMetrics(ctx, paused.httpAddr)
		if err == nil {
			leaseLost, fenced = m["tasker_lease_lost_total"], m["tasker_fenced_writes_total"]
			if leaseLost >= 1 {
				break
			}
		}
	}
	survivor, err := scrapeMetrics(ctx, coords[0].httpAddr)
	require.NoError(t, err)
	t.Logf("faults: kill -9 %s at %s (%d unfinished tasks orphaned, none left under its lease after %s); SIGSTOP %s at %s for %s (%d unfinished tasks, none left after %s); %s saw lease_lost=%g fenced_writes=%g",
		coords[2].id, faults.killedAt.Sub(began).Round(time.Millisecond), faults.killedOrphans, faults.killedTakeover.Round(time.Millisecond),
		paused.id, faults.pausedAt.Sub(began).Round(time.Millisecond), faults.resumedAt.Sub(faults.pausedAt).Round(time.Millisecond),
		faults.pausedOrphans, faults.pausedTakeover.Round(time.Millisecond),
		coords[0].id, survivor["tasker_lease_lost_total"], survivor["tasker_fenced_writes_total"])
	t.Logf("multi: tasks=%d steps=%d coordinators=%d killed=1 paused=1 fenced_writes=%g lease_losses=%g double_completions=%d lost=%d unfinished=%d early_starts=%d stale_writes=%d unfenced_writes=%d revenant_writes=%d handoffs=%d redispatches=%d create_retries=%d took=%s",
		audit.tasks, audit.steps, multiCoordinators, fenced, leaseLost, audit.doubleCompletions, audit.lost, unfinished,
		audit.earlyStarts, audit.staleWrites, audit.unfenced, audit.revenantWrites, audit.handoffs, audit.redispatches, retries,
		took.Round(100*time.Millisecond))

	require.Zero(t, unfinished, "tasks did not finish within %s after the last submission (stuck ones logged above)", multiSettle)
	require.Zero(t, audit.violationCount, "the stored history breaks %d invariants (first ones logged above)", audit.violationCount)
	require.Equal(t, multiTasks, audit.tasks)
	require.Equal(t, multiTasks, audit.completeTasks)
	require.GreaterOrEqual(t, leaseLost, 1.0, "%s never reported losing its lease after the pause", paused.id)
	require.Positive(t, faults.killedOrphans+faults.pausedOrphans, "the faults hit no running task; the test proved nothing about takeover")
	require.Positive(t, audit.handoffs, "no task's history moved to a newer lease, although orphaned tasks finished")

	// Operator actions work through any coordinator: coords[0] owns what
	// it creates, coords[1] is sent the actions.
	orphan := ""
	for _, s := range subs {
		if s.via == 2 {
			orphan = s.id
			break
		}
	}
	require.NotEmpty(t, orphan, "the killed coordinator created no task")
	multiOperatorActions(ctx, t, coords[0], coords[1], orphan)

	// Any coordinator answers for any task, whoever created or ran it.
	for n := 0; n < len(subs); n += 50 {
		s := subs[n]
		other := live[(s.via+1)%len(live)]
		resp, err := other.client.GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: s.id})
		require.NoError(t, err, "GetTask %s on %s", s.id, other.id)
		require.Equal(t, coordinatorv1.State_STATE_COMPLETE, resp.GetTask().GetState(), "task %s as %s reports it", s.id, other.id)
		require.Equal(t, s.key, resp.GetTask().GetIdempotencyKey())
	}
}

// multiCreateSchema creates a fresh schema for the run and drops it when
// the test ends, after every process is gone (cleanups run last-in,
// first-out, and this one is registered before any process starts). The
// returned pool reads and writes that schema.
func multiCreateSchema(ctx context.Context, t *testing.T, baseURL, schema string) *pgxpool.Pool {
	t.Helper()
	conn, err := pgx.Connect(ctx, baseURL)
	require.NoError(t, err, "connect to %s", envTestPostgres)
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	ident := pgx.Identifier{schema}.Sanitize()
	_, err = conn.Exec(ctx, "CREATE SCHEMA "+ident)
	require.NoError(t, err)
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(dctx, baseURL)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer func() { _ = c.Close(dctx) }()
		if _, err := c.Exec(dctx, "DROP SCHEMA "+ident+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	cfg, err := pgxpool.ParseConfig(baseURL)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["search_path"] = ident
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// withSearchPath adds search_path to a postgres:// URL; pgx passes
// parameters it does not know to the server as run-time settings, so every
// connection of the coordinator works in that schema.
func withSearchPath(raw, schema string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL, got %q (err %v)", envTestPostgres, raw, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// multiCheckSchema makes sure the coordinators' tables, and their leases,
// landed in the run's schema.
func multiCheckSchema(ctx context.Context, t *testing.T, pool *pgxpool.Pool, schema string, coords []*multiCoordinator) {
	t.Helper()
	rows, err := pool.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, want := range []string{"templates", "tasks", "steps", "transitions", "leases", "goose_db_version"} {
		require.Contains(t, tables, want, "table %s is not in schema %s", want, schema)
	}
	rows, err = pool.Query(ctx, "SELECT coordinator_id FROM "+pgx.Identifier{schema, "leases"}.Sanitize()+" ORDER BY coordinator_id")
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	want := make([]string, len(coords))
	for i, c := range coords {
		want[i] = c.id
	}
	require.Equal(t, want, ids, "every coordinator holds a lease in schema %s", schema)
}

// multiSubmitAll creates the tasks at a steady pace over the submission
// window, round-robin across the coordinators. A create that fails with a
// transient error, or does not answer in time, is retried against the next
// coordinator with the same idempotency key, so at most one task is stored
// per key however many attempts reach a coordinator. It returns the
// submissions in order and how many attempts were retried.
func multiSubmitAll(ctx context.Context, coords []*multiCoordinator, schema string, began time.Time) ([]multiSubmission, int64, error) {
	subs := make([]multiSubmission, multiTasks)
	errs := make([]error, multiTasks)
	var retries atomic.Int64
	next := make(chan int)
	var wg sync.WaitGroup
	for range multiSubmitWorkers {
		wg.Go(func() {
			for n := range next {
				subs[n], errs[n] = multiCreate(ctx, coords, schema, n, &retries)
			}
		})
	}
	for n := range multiTasks {
		due := began.Add(time.Duration(n) * multiSubmitWindow / multiTasks)
		select {
		case <-time.After(time.Until(due)):
		case <-ctx.Done():
		}
		next <- n
	}
	close(next)
	wg.Wait()
	return subs, retries.Load(), errors.Join(errs...)
}

// multiCreate creates task n, trying coordinators in turn from the n-th.
func multiCreate(ctx context.Context, coords []*multiCoordinator, schema string, n int, retries *atomic.Int64) (multiSubmission, error) {
	shape := multiShapes[n%len(multiShapes)]
	sub := multiSubmission{key: fmt.Sprintf("%s-%04d", schema, n), shape: shape}
	taskCtx, err := structpb.NewStruct(map[string]any{"n": n, "shape": shape})
	if err != nil {
		return sub, err
	}
	req := &coordinatorv1.CreateTaskRequest{Namespace: "tasker", Name: shape, Context: taskCtx, IdempotencyKey: sub.key}
	var last error
	for attempt := range multiCreateTries {
		if attempt > 0 {
			retries.Add(1)
			if attempt%len(coords) == 0 {
				// Every coordinator refused once: give them a moment.
				select {
				case <-time.After(200 * time.Millisecond):
				case <-ctx.Done():
					return sub, ctx.Err()
				}
			}
		}
		via := (n + attempt) % len(coords)
		actx, cancel := context.WithTimeout(ctx, multiCreateTimeout)
		resp, err := coords[via].client.CreateTask(actx, req)
		cancel()
		if err == nil {
			sub.id, sub.via = resp.GetTask().GetId(), via
			if resp.GetTask().GetIdempotencyKey() != sub.key {
				return sub, fmt.Errorf("task %d: create returned task %s with key %q", n, sub.id, resp.GetTask().GetIdempotencyKey())
			}
			return sub, nil
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
			codes.ResourceExhausted, codes.PermissionDenied, codes.Unauthenticated:
			return sub, fmt.Errorf("task %d via %s: %w", n, coords[via].id, err)
		}
		last = fmt.Errorf("task %d via %s: %w", n, coords[via].id, err)
		if ctx.Err() != nil {
			break
		}
	}
	return sub, fmt.Errorf("gave up after %d attempts: %w", multiCreateTries, last)
}

// multiRunFaults kill -9s the third coordinator and pauses the second one
// at their offsets from began, and measures how long the others take to
// claim what each left unfinished.
func multiRunFaults(ctx context.Context, t *testing.T, pool *pgxpool.Pool, coords []*multiCoordinator, began time.Time) multiFaults {
	var (
		f   multiFaults
		err error
	)
	sleepUntil := func(at time.Time) {
		select {
		case <-time.After(time.Until(at)):
		case <-ctx.Done():
		}
	}
	// The watchers write f's takeover times: f is returned only after
	// Wait, which orders their writes before the copy (a deferred Wait
	// would run after `return f` had copied f, racing the writes).
	var watchers sync.WaitGroup

	killed, paused := coords[2], coords[1]
	sleepUntil(began.Add(multiKillAt))
	token := multiLeaseToken(ctx, t, pool, killed.id)
	multiAwaitLoad(ctx, pool, token)
	killed.proc.kill()
	f.killedAt = time.Now()
	f.killedOrphans, err = multiOwned(ctx, pool, token)
	if err != nil {
		t.Errorf("count the tasks %s left: %v", killed.id, err)
	}
	watchers.Go(func() { f.killedTakeover = multiAwaitTakeover(ctx, pool, token, f.killedAt) })

	sleepUntil(began.Add(multiPauseAt))
	token = multiLeaseToken(ctx, t, pool, paused.id)
	multiAwaitLoad(ctx, pool, token)
	if err := paused.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Errorf("SIGSTOP %s: %v", paused.id, err)
	}
	f.pausedAt = time.Now()
	f.pausedOrphans, err = multiOwned(ctx, pool, token)
	if err != nil {
		t.Errorf("count the tasks %s left: %v", paused.id, err)
	}
	watchers.Go(func() { f.pausedTakeover = multiAwaitTakeover(ctx, pool, token, f.pausedAt) })
	sleepUntil(f.pausedAt.Add(multiPause))
	if err := paused.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Errorf("SIGCONT %s: %v", paused.id, err)
	}
	f.resumedAt = time.Now()
	watchers.Wait()
	return f
}

// multiLeaseToken reads a coordinator's current lease token.
func multiLeaseToken(ctx context.Context, t *testing.T, pool *pgxpool.Pool, id string) int64 {
	var token int64
	if err := pool.QueryRow(ctx, "SELECT token FROM leases WHERE coordinator_id = $1", id).Scan(&token); err != nil {
		t.Errorf("read lease of %s: %v", id, err)
	}
	return token
}

// multiOwned counts the unfinished tasks a lease owns.
func multiOwned(ctx context.Context, pool *pgxpool.Pool, token int64) (int, error) {
	var n int
	err := pool.QueryRow(ctx, "SELECT count(*) FROM tasks WHERE owner_token = $1 AND state IN ('pending', 'in_progress')", token).Scan(&n)
	return n, err
}

// multiAwaitLoad returns once the lease owns multiLoad unfinished tasks,
// or after multiLoadWait.
func multiAwaitLoad(ctx context.Context, pool *pgxpool.Pool, token int64) {
	ctx, cancel := context.WithTimeout(ctx, multiLoadWait)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n, err := multiOwned(ctx, pool, token); err == nil && n >= multiLoad {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// multiAwaitTakeover polls until no unfinished task is left under token
// and returns how long after since that was; zero if the context ended
// first.
func multiAwaitTakeover(ctx context.Context, pool *pgxpool.Pool, token int64, since time.Time) time.Duration {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if n, err := multiOwned(ctx, pool, token); err == nil && n == 0 {
			return time.Since(since)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
	}
}

// multiWaitTerminal polls the live coordinators until no task is pending
// or in progress, for at most bound; it returns how many were left.
func multiWaitTerminal(ctx context.Context, t *testing.T, live []*multiCoordinator, bound time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(bound)
	unfinished := -1
	lastLog := time.Now()
	for n := 0; ; n++ {
		c := live[n%len(live)]
		if count, err := multiCountUnfinished(ctx, c); err == nil {
			unfinished = count
			if count == 0 {
				return 0
			}
			if time.Since(lastLog) >= 10*time.Second {
				t.Logf("%d tasks unfinished", count)
				lastLog = time.Now()
			}
		} else {
			t.Logf("list tasks on %s: %v", c.id, err)
		}
		if time.Now().After(deadline) {
			return unfinished
		}
		select {
		case <-ctx.Done():
			return unfinished
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// multiCountUnfinished counts the pending and in-progress tasks, as one
// coordinator reads them from the shared store.
func multiCountUnfinished(ctx context.Context, c *multiCoordinator) (int, error) {
	n := 0
	for _, st := range []coordinatorv1.State{coordinatorv1.State_STATE_PENDING, coordinatorv1.State_STATE_IN_PROGRESS} {
		token := ""
		for {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err := c.client.ListTasks(cctx, &coordinatorv1.ListTasksRequest{State: st, PageSize: 1000, PageToken: token})
			cancel()
			if err != nil {
				return 0, err
			}
			n += len(resp.GetTasks())
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
	}
	return n, nil
}

// multiDumpStuck logs the unfinished tasks with their owners and steps, and
// the leases, as evidence for a takeover that did not happen.
func multiDumpStuck(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	rows, err := pool.Query(ctx, "SELECT coordinator_id, token, expires_at FROM leases ORDER BY coordinator_id")
	if err == nil {
		for rows.Next() {
			var id string
			var token, expires int64
			if rows.Scan(&id, &token, &expires) == nil {
				t.Logf("lease %s token %d expires %s", id, token, time.Unix(0, expires).Format(time.RFC3339Nano))
			}
		}
		rows.Close()
	}
	rows, err = pool.Query(ctx, `SELECT t.id, t.name, t.state, t.owner_token,
			string_agg(s.name || '=' || s.state || '/' || s.attempts, ' ' ORDER BY s.position)
		FROM tasks t JOIN steps s ON s.task_id = t.id
		WHERE t.state IN ('pending', 'in_progress')
		GROUP BY t.id, t.name, t.state, t.owner_token ORDER BY t.id LIMIT 20`)
	if err != nil {
		t.Logf("list stuck tasks: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var id, name, st, steps string
		var owner int64
		if rows.Scan(&id, &name, &st, &owner, &steps) == nil {
			t.Logf("stuck task %s (%s) %s owner_token %d: %s", id, name, st, owner, steps)
		}
	}
}
