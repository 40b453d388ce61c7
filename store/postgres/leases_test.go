package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// These tests cover what the conformance suite cannot: the row locks
// between claims and fenced advances, each interleaving held still by a
// lock the test takes, and the rows a claim reads.

var leaseT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func acquire(t *testing.T, s *Store, id string) *store.Lease {
	t.Helper()
	l, err := s.LeaseAcquire(t.Context(), &store.LeaseAcquireParams{CoordinatorID: id, TTL: time.Hour, Now: leaseT0})
	require.NoError(t, err)
	return l
}

func createTasks(t *testing.T, s *Store, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		p := storetest.TaskParams("ns", leaseT0, "a")
		_, _, err := s.TaskCreate(t.Context(), p)
		require.NoError(t, err)
		ids[i] = p.Task.ID
	}
	return ids
}

func writerPID(t *testing.T, s *Store) int32 {
	t.Helper()
	var pid int32
	require.NoError(t, s.writer.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&pid))
	return pid
}

// waitUntil polls the admin connection until query counts a row.
func waitUntil(t *testing.T, conn *pgx.Conn, query string, args ...any) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, conn.QueryRow(t.Context(), query, args...).Scan(&n))
		return n > 0
	}, 10*time.Second, 5*time.Millisecond, query)
}

// TestClaimSkipsLockedTasks: a task whose owner is mid-advance (its fence
// holds the row) is skipped, not waited for, and claimable once the lock
// is gone.
func TestClaimSkipsLockedTasks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	ids := createTasks(t, s, 3)
	l := acquire(t, s, "a")

	admin := adminConn(t, schema)
	tx, err := admin.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(ctx, "SELECT 1 FROM tasks WHERE id = $1 FOR SHARE", ids[0])
	require.NoError(t, err)

	claimed, err := s.TaskClaim(ctx, &store.TaskClaimParams{Lease: l, Now: leaseT0, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, ids[1:], taskIDsOf(claimed))

	require.NoError(t, tx.Rollback(ctx))
	claimed, err = s.TaskClaim(ctx, &store.TaskClaimParams{Lease: l, Now: leaseT0, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, ids[:1], taskIDsOf(claimed))
}

// TestFenceWaitsForClaimInProgress: a claim by another coordinator that is
// not yet committed holds the task row; the owner's fenced advance waits for
// it and then judges the outcome: refused if the claim committed, applied if
// it rolled back. Never both owners writing.
func TestFenceWaitsForClaimInProgress(t *testing.T) {
	t.Parallel()
	for name, commit := range map[string]bool{"claim commits": true, "claim rolls back": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			schema := newSchema(t)
			s := openStore(t, Config{Schema: schema})
			p := storetest.TaskParams("ns", leaseT0, "a")
			_, _, err := s.TaskCreate(ctx, p)
			require.NoError(t, err)
			owner, other := acquire(t, s, "owner"), acquire(t, s, "other")
			_, err = s.TaskClaim(ctx, &store.TaskClaimParams{Lease: owner, Now: leaseT0})
			require.NoError(t, err)

			admin := adminConn(t, schema)
			// Read now: the writer's one connection is busy once the
			// advance waits.
			pid := writerPID(t, s)
			tx, err := admin.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.Background()) }()
			_, err = tx.Exec(ctx, "UPDATE tasks SET owner_token = $1 WHERE id = $2", other.Token, p.Task.ID)
			require.NoError(t, err)

			done := make(chan error, 1)
			go func() {
				_, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{
					TaskID: p.Task.ID, Lease: owner, At: leaseT0.Add(time.Minute),
					Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
					Steps: []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}},
				})
				done <- err
			}()
			waitUntil(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", pid)

			if commit {
				require.NoError(t, tx.Commit(ctx))
				err := <-done
				require.ErrorIs(t, err, store.ErrLeaseLost)
				require.ErrorContains(t, err, fmt.Sprintf("task is owned by lease %d, not %d", other.Token, owner.Token))
				storetest.RequireTaskState(t, s, p.Task.ID, state.Pending, 0)
				return
			}
			require.NoError(t, tx.Rollback(ctx))
			require.NoError(t, <-done)
			storetest.RequireTaskState(t, s, p.Task.ID, state.InProgress, 1)
		})
	}
}

// TestClaimRechecksLeasesAfterLocking pauses one coordinator's claim after
// it has read the leases but before it locks the task, and meanwhile a new
// coordinator acquires a lease and claims that task. The paused claim then
// locks a task whose owner it has never seen; it must still see that the
// owner is live and leave the task alone.
func TestClaimRechecksLeasesAfterLocking(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	slow := openStore(t, Config{Schema: schema})
	fast := openStore(t, Config{Schema: schema})
	ids := createTasks(t, slow, 1)
	slowLease := acquire(t, slow, "slow")
	admin := adminConn(t, schema)

	pause := pauseLeaseLive(t, admin, slow)

	type answer struct {
		tasks []*store.Task
		err   error
	}
	slowDone := make(chan answer, 1)
	go func() {
		tasks, err := slow.TaskClaim(ctx, &store.TaskClaimParams{Lease: slowLease, Now: leaseT0})
		slowDone <- answer{tasks, err}
	}()
	pause.waitPaused()

	fastLease := acquire(t, fast, "fast")
	claimed, err := fast.TaskClaim(ctx, &store.TaskClaimParams{Lease: fastLease, Now: leaseT0})
	require.NoError(t, err)
	require.Equal(t, ids, taskIDsOf(claimed))

	pause.resume()
	got := <-slowDone
	require.NoError(t, got.err)
	require.Empty(t, got.tasks, "the paused claim must not take a task of a live lease")
	task, err := slow.TaskGet(ctx, ids[0])
	require.NoError(t, err)
	require.Equal(t, fastLease.Token, task.OwnerToken)
}

// leaseLivePause stops one store's writer inside tasker_lease_live, before
// it reads the leases, until resume: the moment a claim or take has taken
// its statement's snapshot but not yet judged or locked a task.
type leaseLivePause struct {
	t     *testing.T
	admin *pgx.Conn
	key   int64
}

// pauseLeaseLive replaces tasker_lease_live with the migration's own, but
// first waiting for an advisory lock the test holds, on s's writer
// connection only.
func pauseLeaseLive(t *testing.T, admin *pgx.Conn, s *Store) *leaseLivePause {
	t.Helper()
	p := &leaseLivePause{t: t, admin: admin, key: time.Now().UnixNano() & 0x7fffffff}
	_, err := admin.Exec(t.Context(), "SELECT pg_advisory_lock($1)", p.key)
	require.NoError(t, err)
	_, err = admin.Exec(t.Context(), fmt.Sprintf(`CREATE OR REPLACE FUNCTION tasker_lease_live(p_token BIGINT, p_at BIGINT)
		RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE COST 1000 AS $$
		BEGIN
			IF pg_backend_pid() = %d THEN
				PERFORM pg_advisory_xact_lock_shared(%d);
			END IF;
			RETURN EXISTS (SELECT 1 FROM leases WHERE token = p_token AND expires_at > p_at);
		END
		$$`, writerPID(t, s), p.key))
	require.NoError(t, err)
	return p
}

// waitPaused returns once the store's writer waits in the function.
func (p *leaseLivePause) waitPaused() {
	p.t.Helper()
	waitUntil(p.t, p.admin, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted", p.key)
}

func (p *leaseLivePause) resume() {
	p.t.Helper()
	_, err := p.admin.Exec(p.t.Context(), "SELECT pg_advisory_unlock($1)", p.key)
	require.NoError(p.t, err)
}

// TestLeaseMessages: a refusal says why, so a coordinator's log tells an
// expired lease from a takeover.
func TestLeaseMessages(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	p := storetest.TaskParams("ns", leaseT0, "a")
	_, _, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)
	l := acquire(t, s, "a")

	_, err = s.LeaseRenew(ctx, &store.LeaseRenewParams{Lease: l, TTL: time.Hour, Now: l.Expires.Add(time.Second)})
	require.ErrorIs(t, err, store.ErrLeaseLost)
	require.ErrorContains(t, err, fmt.Sprintf("lease %d expired at %d", l.Token, l.Expires.UnixNano()))

	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, Lease: l, At: leaseT0})
	require.ErrorIs(t, err, store.ErrLeaseLost)
	require.ErrorContains(t, err, fmt.Sprintf("task is owned by lease 0, not %d", l.Token))

	replacement := acquire(t, s, "a")
	_, err = s.TaskClaim(ctx, &store.TaskClaimParams{Lease: l, Now: leaseT0})
	require.ErrorIs(t, err, store.ErrLeaseLost)
	require.ErrorContains(t, err, fmt.Sprintf("lease %d was replaced", l.Token))

	_, err = s.TaskClaim(ctx, &store.TaskClaimParams{Lease: replacement, Now: leaseT0})
	require.NoError(t, err)
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, Lease: replacement, At: replacement.Expires})
	require.ErrorIs(t, err, store.ErrLeaseLost)
	require.ErrorContains(t, err, fmt.Sprintf("lease %d expired", replacement.Token))
}

// TestClaimReadsOnlyWork: a claim reads the tasks with work (active ones,
// errored ones with a running step) and nothing of the finished history,
// however much of it there is. It runs the claim under EXPLAIN ANALYZE,
// with the plan the committer's connection uses, and counts the rows every
// scan of tasks and steps touched.
func TestClaimReadsOnlyWork(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	openStore(t, Config{Schema: schema})
	conn := adminConn(t, schema)
	const finished, withWork = 4000, 60
	for _, fill := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO tasks (id, namespace, name, version, state, context, created_at, updated_at)
			SELECT lpad(i::text, 8, '0'), 'ns', 'linear', '1.0.0',
				CASE WHEN i % 4 = 0 THEN 'error' WHEN i % 4 = 1 THEN 'cancelled' ELSE 'complete' END, '{}', 1, 1
			FROM generate_series(1, $1::int) AS i`, []any{finished}},
		// Tasks with work sort after the history ('w' > digits), so a
		// claim walking all tasks in id order would read it all first.
		{`INSERT INTO tasks (id, namespace, name, version, state, context, created_at, updated_at)
			SELECT 'w' || lpad(i::text, 7, '0'), 'ns', 'linear', '1.0.0',
				CASE WHEN i % 3 = 0 THEN 'error' WHEN i % 3 = 1 THEN 'pending' ELSE 'in_progress' END, '{}', 1, 1
			FROM generate_series(1, $1::int) AS i`, []any{withWork}},
		// One step each: running in active tasks and in errored tasks
		// with work, finished like its task in the history.
		{`INSERT INTO steps (id, task_id, name, position, handler, state, attempts, max_attempts, retryable, skippable, updated_at)
			SELECT 's' || id, id, 'a', 0, 'h',
				CASE WHEN id LIKE 'w%' AND state <> 'pending' THEN 'in_progress' ELSE state END, 1, 3, true, false, 1
			FROM tasks`, nil},
		// What TaskAdvance and TaskCreate keep: errored tasks with a
		// running step are draining.
		{`UPDATE tasks SET draining = true WHERE state = 'error' AND id LIKE 'w%'`, nil},
		{`INSERT INTO leases (coordinator_id, token, expires_at) VALUES ('a', 1, 100)`, nil},
		{`ANALYZE`, nil},
	} {
		_, err := conn.Exec(ctx, fill.sql, fill.args...)
		require.NoError(t, err, fill.sql)
	}
	_, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)

	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	var plan []struct {
		Plan planNode `json:"Plan"`
	}
	require.NoError(t, tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+taskClaimSQL,
		int64(1), int64(0), int64(1000)).Scan(&plan))
	require.Len(t, plan, 1)
	root := plan[0].Plan
	require.Equal(t, float64(withWork), root.ActualRows, "every task with work is claimed")

	read := map[string]float64{}
	indexes := map[string]bool{}
	root.walk(func(n planNode) {
		if strings.Contains(n.NodeType, "Scan") && n.Relation != "" {
			read[n.Relation] += (n.ActualRows + n.RemovedByFilter) * n.ActualLoops
			indexes[n.Index] = true
		}
	})
	// Each task with work is read a few times (its index entries, its row
	// for the checks, its row again to update it); a scan of the history
	// would read thousands.
	require.LessOrEqual(t, read["tasks"], float64(4*withWork), "rows of tasks read: %v", read)
	require.LessOrEqual(t, read["steps"], float64(2*withWork), "rows of steps read: %v", read)
	require.True(t, indexes["tasks_active_id"] && indexes["tasks_draining"], "indexes used: %v", indexes)
}

// planNode is the part of EXPLAIN (ANALYZE, FORMAT JSON) the plan tests
// read.
type planNode struct {
	NodeType        string     `json:"Node Type"`
	Relation        string     `json:"Relation Name"`
	Index           string     `json:"Index Name"`
	ActualRows      float64    `json:"Actual Rows"`
	ActualLoops     float64    `json:"Actual Loops"`
	RemovedByFilter float64    `json:"Rows Removed by Filter"`
	Plans           []planNode `json:"Plans"`
}

func (n planNode) walk(visit func(planNode)) {
	visit(n)
	for _, child := range n.Plans {
		child.walk(visit)
	}
}

func taskIDsOf(tasks []*store.Task) []string {
	ids := make([]string, len(tasks))
	for i, task := range tasks {
		ids[i] = task.ID
	}
	return ids
}
