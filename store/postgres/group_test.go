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
	// A hundred rows, as analyzed (by autovacuum) early in a new
	// database's life: the size at which a scan of the whole table looked
	// cheapest to the planner.
	storetest.SeedTasks(t, s, "ns", 100)
	_, err := adminConn(t, schema).Exec(ctx, "ANALYZE")
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
		p := &pipe{req: -1, grouping: grouping}
		for i, r := range requests {
			p.req = i
			queueAdvance(p, r)
		}
		p.req = -1
		p.commit()
		var got []string
		for _, q := range p.batch.QueuedQueries {
			got = append(got, q.SQL)
		}
		return got
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
