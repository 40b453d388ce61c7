package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestFinishedQueryPlans pins analytics' reads to their indexes, with
// sequential scans off as in TestQueryPlans: the finished tasks of a
// template come from a backward walk of tasks_finished (the order asked
// for), their transitions from transitions_task_id_seq; neither sorts.
func TestFinishedQueryPlans(t *testing.T) {
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

	now := time.Now()
	for _, version := range []string{"", "1.0.0"} {
		query, args := taskListFinishedQuery(&store.TaskListFinishedParams{
			Namespace: "ns", Name: "linear", Version: version, Since: now.Add(-time.Hour), Until: now, Limit: 10001,
		})
		got := plan(query, args...)
		t.Logf("TaskListFinished (version %q):\n%s", version, got)
		require.Contains(t, got, "Index Scan Backward using tasks_finished", got)
		require.NotContains(t, got, "Sort", got)
	}
	got := plan(transitionListTasksQuery, []string{"a", "b", "c"})
	t.Logf("TransitionListTasks:\n%s", got)
	require.Contains(t, got, "transitions_task_id_seq", got)
	require.NotContains(t, got, "Sort", got)
}

// TestFinishedReadsOnlyTheWindow: analytics' reads touch the template's
// tasks that finished in the window and their transitions, and nothing of
// the rest, however much of it there is: finished tasks of the template
// before and after the window, active tasks of the template updated in
// it, other templates' tasks finished in it, and all their transitions.
// Both reads run under EXPLAIN ANALYZE, and every scan's rows are counted.
func TestFinishedReadsOnlyTheWindow(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	openStore(t, Config{Schema: schema})
	conn := adminConn(t, schema)
	const (
		history = 4000 // finished before the window
		inside  = 40   // finished in the window
		since   = 1_000_000
		until   = 2_000_000
	)
	for _, fill := range []struct {
		sql  string
		args []any
	}{
		// The template's history, and as many tasks finished after the
		// window.
		{`INSERT INTO tasks (id, namespace, name, version, state, context, created_at, updated_at)
			SELECT 'h' || lpad(i::text, 7, '0'), 'ns', 'linear', '1.0.0',
				CASE WHEN i % 3 = 0 THEN 'error' WHEN i % 3 = 1 THEN 'cancelled' ELSE 'complete' END, '{}', 1,
				CASE WHEN i % 2 = 0 THEN i ELSE $1::bigint + i END
			FROM generate_series(1, $2::int) AS i`, []any{until, history}},
		// The window's tasks, half of them of another version.
		{`INSERT INTO tasks (id, namespace, name, version, state, context, created_at, updated_at)
			SELECT 'w' || lpad(i::text, 7, '0'), 'ns', 'linear', CASE WHEN i % 2 = 0 THEN '1.0.0' ELSE '2.0.0' END,
				'complete', '{}', 1, $1::bigint + i
			FROM generate_series(1, $2::int) AS i`, []any{since, inside}},
		// Active tasks of the template and finished tasks of another,
		// updated in the window.
		{`INSERT INTO tasks (id, namespace, name, version, state, context, created_at, updated_at)
			SELECT 'a' || lpad(i::text, 7, '0'), 'ns', CASE WHEN i % 2 = 0 THEN 'linear' ELSE 'other' END, '1.0.0',
				CASE WHEN i % 2 = 0 THEN 'in_progress' ELSE 'complete' END, '{}', 1, $1::bigint + i
			FROM generate_series(1, $2::int) AS i`, []any{since, history}},
		// Three transitions per task.
		{`INSERT INTO transitions (task_id, step_id, step_name, from_state, to_state, at, reason, attempt)
			SELECT id, NULL, '', 'pending', 'in_progress', k, '', 0 FROM tasks, generate_series(1, 3) AS k`, nil},
		{`ANALYZE`, nil},
	} {
		_, err := conn.Exec(ctx, fill.sql, fill.args...)
		require.NoError(t, err, fill.sql)
	}

	explain := func(query string, args ...any) (root planNode, read map[string]float64, indexes map[string]bool) {
		t.Helper()
		var plan []struct {
			Plan planNode `json:"Plan"`
		}
		require.NoError(t, conn.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+query, args...).Scan(&plan))
		require.Len(t, plan, 1)
		read, indexes = map[string]float64{}, map[string]bool{}
		plan[0].Plan.walk(func(n planNode) {
			if strings.Contains(n.NodeType, "Scan") && n.Relation != "" {
				read[n.Relation] += (n.ActualRows + n.RemovedByFilter) * n.ActualLoops
			}
			// A bitmap scan names its index on a node of its own.
			if n.Index != "" {
				indexes[n.Index] = true
			}
		})
		return plan[0].Plan, read, indexes
	}

	p := &store.TaskListFinishedParams{Namespace: "ns", Name: "linear",
		Since: fromNanos(since), Until: fromNanos(until), Limit: 10001}
	query, args := taskListFinishedQuery(p)
	root, read, indexes := explain(query, args...)
	require.Equal(t, float64(inside), root.ActualRows, "every task of the window")
	require.Equal(t, float64(inside), read["tasks"], "rows of tasks read: %v", read)
	require.True(t, indexes["tasks_finished"], "indexes used: %v", indexes)

	// With a version, the other version's tasks of the window are read
	// and left out; nothing outside the window is.
	p.Version = "2.0.0"
	query, args = taskListFinishedQuery(p)
	root, read, _ = explain(query, args...)
	require.Equal(t, float64(inside/2), root.ActualRows)
	require.Equal(t, float64(inside), read["tasks"], "rows of tasks read: %v", read)

	// The planner may walk the index per id or gather the rows through a
	// bitmap of it and sort them; either reads only the window's.
	rows, err := conn.Query(ctx, `SELECT id FROM tasks WHERE id LIKE 'w%'`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	root, read, indexes = explain(transitionListTasksQuery, ids)
	t.Logf("TransitionListTasks of the window's tasks: %s; rows read %v", root.NodeType, read)
	require.Equal(t, float64(3*inside), root.ActualRows)
	require.Equal(t, float64(3*inside), read["transitions"], "rows of transitions read: %v", read)
	require.True(t, indexes["transitions_task_id_seq"], "indexes used: %v", indexes)
}
