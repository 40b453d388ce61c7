package postgres

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestTaskCountPlans pins every TaskCount filter to an index-only scan of
// an index holding the state: the counts read index entries, never task
// rows. As in TestQueryPlans, sequential scans are off for the check, and
// the table is vacuumed so the planner knows its pages are all visible
// (what autovacuum keeps true of a table of mostly finished tasks).
func TestTaskCountPlans(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	storetest.SeedTasks(t, s, "ns", 20)
	conn := adminConn(t, schema)
	for _, stmt := range []string{"SET enable_seqscan = off", "VACUUM ANALYZE tasks"} {
		_, err := conn.Exec(ctx, stmt)
		require.NoError(t, err)
	}
	for _, tc := range []struct {
		params store.TaskCountParams
		index  string
	}{
		{store.TaskCountParams{}, ""},
		{store.TaskCountParams{Namespace: "ns"}, "tasks_namespace_name_state"},
		{store.TaskCountParams{Namespace: "ns", Name: "linear"}, "tasks_namespace_name_state"},
		{store.TaskCountParams{Name: "linear"}, "tasks_namespace_name_state"},
	} {
		query, args := taskCountQuery(&tc.params)
		plan := explainPlan(t, conn, query, args...)
		t.Logf("%+v:\n%s", tc.params, plan)
		require.Contains(t, plan, "Index Only Scan using "+tc.index, "%+v: %s", tc.params, plan)
		require.NotContains(t, plan, "Seq Scan", "%+v: %s", tc.params, plan)
		require.NotContains(t, plan, "Sort", "%+v: %s", tc.params, plan)
	}
}
