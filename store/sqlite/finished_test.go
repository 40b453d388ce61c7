package sqlite

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestFinishedQueryPlans pins analytics' reads to their indexes: the
// finished tasks of a template are a range of tasks_finished bounded on
// both sides by the window (so finished tasks outside it, and active ones,
// are never read), walked in the order asked for; transitions are read by
// task from transitions_task_id_seq. Neither sorts.
func TestFinishedQueryPlans(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	storetest.SeedTasks(t, s, "ns", 20)
	_, err := s.wconn.ExecContext(ctx, "ANALYZE")
	require.NoError(t, err)

	plan := func(query string, args ...any) string {
		t.Helper()
		return explainPlan(t, s, query, args...)
	}

	now := time.Now()
	for _, version := range []string{"", "1.0.0"} {
		query, args := taskListFinishedQuery(&store.TaskListFinishedParams{
			Namespace: "ns", Name: "linear", Version: version, Since: now.Add(-time.Hour), Until: now, Limit: 10001,
		})
		got := plan(query, args...)
		t.Logf("TaskListFinished (version %q): %s", version, got)
		require.Contains(t, got, "SEARCH tasks USING INDEX tasks_finished (namespace=? AND name=? AND updated_at>? AND updated_at<?)", got)
		require.NotContains(t, got, "TEMP B-TREE", got)
	}

	query := strings.Replace(transitionListTasksQuery, "(?)", "(?, ?, ?)", 1)
	got := plan(query, "a", "b", "c")
	t.Logf("TransitionListTasks: %s", got)
	require.Contains(t, got, "SEARCH transitions USING INDEX transitions_task_id_seq (task_id=?)", got)
	require.NotContains(t, got, "TEMP B-TREE", got)
}
