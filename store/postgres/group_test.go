package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestGroupStatementsLookRowsUpByKey: the writer's generic plans for a
// group's statements, made at their first run on small tables as on a new
// database, find steps and tasks through indexes, so they stay cheap
// however large the tables grow. EXPLAIN EXECUTE shows the plan the writer
// cached, and the session's own settings, under which it runs, allow
// sequential scans.
func TestGroupStatementsLookRowsUpByKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	// Autovacuum would analyze these tables again at a moment of its own
	// (seeding a hundred tasks crosses its threshold): new statistics
	// invalidate the writer's cached plans, and the EXPLAIN below, run
	// outside a group, would plan afresh with sequential scans allowed.
	// On a loaded machine that happened between the group and the
	// EXPLAIN; the ANALYZE below is the only one.
	_, err := adminConn(t, schema).Exec(ctx, `ALTER TABLE tasks SET (autovacuum_enabled = off);
		ALTER TABLE steps SET (autovacuum_enabled = off);
		ALTER TABLE leases SET (autovacuum_enabled = off);
		ALTER TABLE transitions SET (autovacuum_enabled = off)`)
	require.NoError(t, err)
	// A hundred rows, as analyzed (by autovacuum) early in a new
	// database's life: the size at which a scan of the whole table looked
	// cheapest to the planner.
	storetest.SeedTasks(t, s, "ns", 100)
	_, err = adminConn(t, schema).Exec(ctx, "ANALYZE")
	require.NoError(t, err)
	at := time.Unix(1_700_000_000, 0)
	lease, err := s.LeaseAcquire(ctx, &store.LeaseAcquireParams{CoordinatorID: "c1", TTL: time.Hour, Now: at})
	require.NoError(t, err)
	p := storetest.TaskParams("ns", at, "a")
	_, _, err = s.TaskCreate(ctx, p)
	require.NoError(t, err)
	_, err = s.TaskClaim(ctx, &store.TaskClaimParams{Lease: lease, Now: at, Limit: 1000})
	require.NoError(t, err)
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at, Lease: lease, Release: true,
		Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
		Steps: []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}}})
	require.NoError(t, err)

	conn, err := s.writer.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	var seqscan string
	require.NoError(t, conn.QueryRow(ctx, "SHOW enable_seqscan").Scan(&seqscan))
	require.Equal(t, "on", seqscan, "SET LOCAL ended with its group")
	for name, params := range map[string]int{stmtGroupFence: 3, stmtGroupSteps: 18, stmtGroupTasks: 7, stmtGroupFree: 1} {
		nulls := strings.TrimSuffix(strings.Repeat("NULL,", params), ",")
		plan := explainPlan(t, conn.Conn(), "EXECUTE "+name+"("+nulls+")")
		require.NotContains(t, plan, "Seq Scan on steps", "%s:\n%s", name, plan)
		require.NotContains(t, plan, "Seq Scan on tasks", "%s:\n%s", name, plan)
		require.NotContains(t, plan, "Hash Join", "%s:\n%s", name, plan)
	}
}

// TestPlainAdvancesShareStatements: in a batch's first run, consecutive
// plain advances are queued as one statement per kind of change; a second
// advance of a task already in the group, or an advance that is not plain,
// closes the group first, so order is kept.
func TestPlainAdvancesShareStatements(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_700_000_000, 0)
	lease := &store.Lease{Token: 7, CoordinatorID: "c1"}
	advance := func(task string, withTask bool) *store.TaskAdvanceParams {
		p := &store.TaskAdvanceParams{TaskID: task, At: at, Lease: lease,
			Steps: []*store.StepChange{{StepID: task + "-a", StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}}}
		if withTask {
			p.Task = &store.TaskChange{From: state.InProgress, To: state.Complete}
			p.Release = true
		}
		return p
	}
	requests := []*store.TaskAdvanceParams{
		advance("t1", false), advance("t2", true), advance("t3", false), // one group
		advance("t1", true),                  // t1 again: a second group
		advance("t4", false),                 // joins it
		{TaskID: "t4", At: at, Lease: lease}, // not plain (nothing to change): on its own
		advance("t6", false),                 // a third group
	}

	names := func(grouping bool) []string {
		queue := make([]any, len(requests))
		for i, r := range requests {
			queue[i] = r
		}
		return queuedStatements(grouping, queue)
	}

	require.Equal(t, []string{
		stmtGroupIndexes, stmtGroupFence, stmtGroupSteps, stmtGroupFree, stmtGroupTasks, stmtGroupAnyScan,
		stmtGroupIndexes, stmtGroupFence, stmtGroupSteps, stmtGroupFree, stmtGroupTasks, stmtGroupAnyScan,
		stmtFence, stmtTaskExists,
		stmtGroupIndexes, stmtGroupFence, stmtGroupSteps, stmtGroupAnyScan,
		stmtCommit,
	}, names(true))

	// With savepoints (grouping off), every request is queued on its own.
	ungrouped := names(false)
	require.NotContains(t, ungrouped, stmtGroupSteps)
	require.Equal(t, stmtFence, ungrouped[0])
	require.Equal(t, stmtAdvanceStep, ungrouped[1])
}

// TestPlainCreatesShareStatements: in a batch's first run, plain creates
// are queued as one statement, beside the advance group and before it; a
// create that is not plain, or an advance of a task in the create group,
// queues the groups first, so order is kept. With savepoints each create
// is queued on its own.
func TestPlainCreatesShareStatements(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_700_000_000, 0)
	lease := &store.Lease{Token: 7, CoordinatorID: "c1"}
	create := func() *store.TaskCreateParams { return storetest.TaskParams("ns", at, "a", "b") }
	advance := func(task string) *store.TaskAdvanceParams {
		return &store.TaskAdvanceParams{TaskID: task, At: at, Lease: lease,
			Steps: []*store.StepChange{{StepID: task + "-a", StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}}}
	}
	debounced := create()
	debounced.Task.DebounceKey = "k"
	second := create()
	requests := []any{
		create(), advance("t1"), create(), advance("t2"), // one create group, one advance group
		debounced,                       // not plain: on its own
		second, advance(second.Task.ID), // second's advance: after its create group
		create(),
	}

	names := func(grouping bool) []string { return queuedStatements(grouping, requests) }

	require.Equal(t, []string{
		stmtGroupIndexes, stmtGroupCreate, stmtGroupFence, stmtGroupSteps, stmtGroupAnyScan,
		stmtCloseDebounce, stmtCreateDebounced,
		stmtGroupIndexes, stmtGroupCreate, stmtGroupAnyScan,
		stmtGroupIndexes, stmtGroupCreate, stmtGroupFence, stmtGroupSteps, stmtGroupAnyScan,
		stmtCommit,
	}, names(true))

	ungrouped := names(false)
	require.NotContains(t, ungrouped, stmtGroupCreate)
	require.Equal(t, []string{stmtCreateTask, stmtFence, stmtAdvanceStep}, ungrouped[:3])
}

// TestGroupedCreatesCommitInOneRun sends grouped creates as a batch's first
// run does and requires the server to take them: a group statement the
// server refused would not change any answer (the run with savepoints
// queues each create alone), so only this shows the group working. The
// groups name no bypassed step and no dependency, or some.
func TestGroupedCreatesCommitInOneRun(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Unix(1_700_000_000, 0)
	conn, err := s.writer.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()

	for name, creates := range map[string][]*store.TaskCreateParams{
		"plain":  {storetest.TaskParams("ns", at, "a"), storetest.TaskParams("ns", at, "a", "b")},
		"shaped": {storetest.TaskParams("ns", at, "a", "b", "c"), storetest.TaskParams("ns", at, "a"), storetest.TaskParams("ns", at, "a", "b")},
	} {
		if name == "shaped" {
			creates[0].Steps[1].DependsOn = []string{"a"}
			creates[0].Steps[2].DependsOn = []string{"a", "b"}
			creates[2].Task.BypassSteps = []string{"b"}
			creates[2].Steps[1].DependsOn = []string{"a"}
		}
		p := &pipe{req: -1, grouping: true, ctx: ctx, conn: conn.Conn()}
		p.exec(stmtBegin)
		results := make([]*createResult, len(creates))
		for i, c := range creates {
			p.req = i
			results[i] = queueTaskCreate(p, c, createArgs(c), nil)
		}
		p.req = -1
		p.commit()
		require.Equal(t, stmtGroupCreate, p.batch.QueuedQueries[2].SQL, name)
		failed, err := p.send(ctx, conn.Conn())
		require.NoError(t, err, "%s: the group's statement was taken", name)
		require.Equal(t, -1, failed)
		for i, c := range creates {
			require.True(t, results[i].created, "%s: create %d", name, i)
			require.Len(t, results[i].seqs, len(c.Transitions))
			got, err := s.TaskGet(ctx, c.Task.ID)
			require.NoError(t, err)
			require.Equal(t, c.Task.BypassSteps, got.BypassSteps, "%s: create %d", name, i)
			steps, err := s.StepList(ctx, c.Task.ID)
			require.NoError(t, err)
			for k, st := range steps {
				require.Equal(t, c.Steps[k].DependsOn, st.DependsOn, "%s: create %d step %d", name, i, k)
			}
		}
	}
}

// queuedStatements queues requests (creates and advances) in one pipe, as
// a batch's first run (grouping) or its run with savepoints does, then its
// commit, and returns the names of the statements queued.
func queuedStatements(grouping bool, requests []any) []string {
	p := &pipe{req: -1, grouping: grouping}
	for i, r := range requests {
		p.req = i
		switch r := r.(type) {
		case *store.TaskCreateParams:
			queueTaskCreate(p, r, createArgs(r), nil)
		case *store.TaskAdvanceParams:
			queueAdvance(p, r)
		}
	}
	p.req = -1
	p.commit()
	var got []string
	for _, q := range p.batch.QueuedQueries {
		got = append(got, q.SQL)
	}
	return got
}
