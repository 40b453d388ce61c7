package postgres

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestStepUpdatesStayInPlace: a step's moves to in_progress and on to its
// outcome change no indexed column of steps, so PostgreSQL applies them as
// heap-only (HOT) updates that write no index entry (see the migration
// 00022). Counted from PostgreSQL's own statistics, which a backend
// publishes within about a second of its commits.
func TestStepUpdatesStayInPlace(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	at := time.Unix(1_700_000_000, 0)
	const tasks = 20
	for range tasks {
		p := storetest.TaskParams("ns", at, "a", "b")
		_, _, err := s.TaskCreate(ctx, p)
		require.NoError(t, err)
		for _, st := range p.Steps {
			_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
				Steps: []*store.StepChange{{StepID: st.ID, StepName: st.Name, From: state.Pending, To: state.InProgress, Attempts: 1}}})
			require.NoError(t, err)
			_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
				Steps: []*store.StepChange{{StepID: st.ID, StepName: st.Name, From: state.InProgress, To: state.Complete,
					ExpectAttempts: 1, Attempts: 1, Results: []byte(`{"ok":true}`)}}})
			require.NoError(t, err)
		}
	}
	admin := adminConn(t, schema)
	var updates, hot int64
	require.Eventually(t, func() bool {
		_, err := admin.Exec(ctx, "SELECT pg_stat_clear_snapshot()")
		require.NoError(t, err)
		err = admin.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'steps'`, schema).Scan(&updates, &hot)
		require.NoError(t, err)
		return updates >= 4*tasks
	}, 20*time.Second, 50*time.Millisecond, "the writer's statistics reach pg_stat_user_tables")
	require.Equal(t, int64(4*tasks), updates)
	require.GreaterOrEqual(t, hot, updates*9/10, "of %d step updates, %d were HOT", updates, hot)
}
