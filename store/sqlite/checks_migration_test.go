package sqlite

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
)

// TestHotWritesBuildNoTemporaryTables reads the programs SQLite compiles
// for the statements every task and step runs: none may open an ephemeral
// table, which SQLite builds (a pager, a page cache and their
// allocations) on every execution, as it did for the IN lists of the state
// CHECK constraints and of tasks_finished before migration 23.
func TestHotWritesBuildNoTemporaryTables(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	hot := []string{sqlInsertTask, sqlUpdateTask, sqlUpdateStepNamed, sqlFence, sqlSavepoint, sqlReleaseSavepoint}
	hot = append(hot, transitionInserts[:3]...)
	hot = append(hot, stepInserts[:3]...)
	conn, err := s.reader.Conn(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	for _, q := range hot {
		ops := explain(t, conn, q)
		require.NotEmpty(t, ops, q)
		require.NotContains(t, ops, "OpenEphemeral", "%s\nopcodes: %v", q, ops)
	}
}

// explain returns the opcodes of the program SQLite compiles for q.
func explain(t *testing.T, conn *sql.Conn, q string) []string {
	t.Helper()
	var ops []string
	err := conn.Raw(func(dc any) error {
		st, err := dc.(driver.ConnPrepareContext).PrepareContext(t.Context(), "EXPLAIN "+q)
		if err != nil {
			return err
		}
		defer st.Close()
		// EXPLAIN compiles without running: any values will do.
		args := make([]driver.NamedValue, st.NumInput())
		for i := range args {
			args[i].Ordinal = i + 1
		}
		rows, err := st.(driver.StmtQueryContext).QueryContext(t.Context(), args)
		if err != nil {
			return err
		}
		defer rows.Close()
		row := make([]driver.Value, len(rows.Columns()))
		for {
			if err := rows.Next(row); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
			ops = append(ops, row[1].(string))
		}
	})
	require.NoError(t, err, q)
	return ops
}

// TestStateChecksMigration upgrades a file holding tasks and steps from
// before migration 23 and back: the stored rows stay as they are, the
// schema passes SQLite's integrity check, and the rewritten constraints
// still refuse a state that does not exist.
func TestStateChecksMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tasker.db")
	db, err := sqlx.Open("sqlite3", Config{Path: path, Synchronous: "full"}.dsn(true))
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	provider, err := migrations(db, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	_, err = provider.UpTo(ctx, migrationStateChecks-1)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO tasks (id, namespace, name, version, state, context, created_at, updated_at)
		VALUES ('t1', 'ns', 'wf', '1.0.0', 'complete', '{}', 1, 2), ('t2', 'ns', 'wf', '1.0.0', 'in_progress', '{}', 1, 2)`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO steps (id, task_id, name, position, handler, state, attempts, max_attempts, retryable, skippable, updated_at)
		VALUES ('s1', 't1', 'a', 0, 'h', 'complete', 1, 3, 1, 0, 2), ('s2', 't2', 'a', 0, 'h', 'skipped', 0, 3, 1, 0, 2)`)
	require.NoError(t, err)

	definitions := func() (tasks, steps, finished string) {
		t.Helper()
		require.NoError(t, db.GetContext(ctx, &tasks, `SELECT sql FROM sqlite_schema WHERE name = 'tasks'`))
		require.NoError(t, db.GetContext(ctx, &steps, `SELECT sql FROM sqlite_schema WHERE name = 'steps'`))
		require.NoError(t, db.GetContext(ctx, &finished, `SELECT sql FROM sqlite_schema WHERE name = 'tasks_finished'`))
		return tasks, steps, finished
	}
	check := func(up bool) {
		t.Helper()
		var integrity string
		require.NoError(t, db.GetContext(ctx, &integrity, `PRAGMA integrity_check`))
		require.Equal(t, "ok", integrity)
		var states []string
		require.NoError(t, db.SelectContext(ctx, &states, `SELECT state FROM tasks ORDER BY id`))
		require.Equal(t, []string{"complete", "in_progress"}, states)
		require.NoError(t, db.SelectContext(ctx, &states, `SELECT state FROM steps ORDER BY id`))
		require.Equal(t, []string{"complete", "skipped"}, states)
		var finished []string
		require.NoError(t, db.SelectContext(ctx, &finished, `SELECT id FROM tasks INDEXED BY tasks_finished
			WHERE `+map[bool]string{true: finishedStates, false: `state IN ('complete', 'error', 'cancelled', 'resolved_manually')`}[up]+`
			AND namespace = 'ns' AND name = 'wf'`))
		require.Equal(t, []string{"t1"}, finished)
		_, err := db.ExecContext(ctx, `UPDATE tasks SET state = 'done' WHERE id = 't2'`)
		require.ErrorContains(t, err, "CHECK constraint failed")
		_, err = db.ExecContext(ctx, `UPDATE steps SET state = 'done' WHERE id = 's2'`)
		require.ErrorContains(t, err, "CHECK constraint failed")
		_, err = db.ExecContext(ctx, `UPDATE steps SET state = 'error' WHERE id = 's2'`)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `UPDATE steps SET state = 'skipped' WHERE id = 's2'`)
		require.NoError(t, err)
	}

	tasksBefore, stepsBefore, finishedBefore := definitions()
	require.Contains(t, tasksBefore, stateCheckEdits[0].inList)
	check(false)

	_, err = provider.UpByOne(ctx)
	require.NoError(t, err)
	tasksAfter, stepsAfter, finishedAfter := definitions()
	require.Equal(t, strings.Replace(tasksBefore, stateCheckEdits[0].inList, stateCheckEdits[0].orChain, 1), tasksAfter)
	require.Equal(t, strings.Replace(stepsBefore, stateCheckEdits[1].inList, stateCheckEdits[1].orChain, 1), stepsAfter)
	require.Equal(t, tasksFinishedNotIn, finishedAfter)
	check(true)

	_, err = provider.Down(ctx)
	require.NoError(t, err)
	tasks, steps, finished := definitions()
	require.Equal(t, tasksBefore, tasks)
	require.Equal(t, stepsBefore, steps)
	require.Equal(t, finishedBefore, finished)
	check(false)
}
