package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/pressly/goose/v3"
)

// Migration 23 rewrites the state CHECK constraints of tasks and steps, and
// the predicate of the partial index tasks_finished, without IN lists.
// SQLite evaluates `x IN (a, b, c, ...)` with more than two values by
// building a temporary b-tree of the values (an ephemeral table: a pager,
// a page cache and their allocations) each time a statement runs, and
// every task insert, step insert and state change evaluated one or more of
// these: four per step of a linear workflow, about 7% of the coordinator's
// CPU under load. An OR of equalities, or NOT IN with two values, is
// evaluated in place.
//
// The constraints accept exactly the same rows as before, so no stored
// row changes: the table definitions are edited in the schema table, as
// SQLite's documentation describes for changes that do not touch stored
// content, rather than by copying every task and step into new tables.
// Bumping schema_version makes every connection, this one included,
// reload the schema before its next statement.
const migrationStateChecks = 23

// stateCheckEdits are the migration's edits: in table's definition,
// inList becomes orChain.
var stateCheckEdits = []struct{ table, inList, orChain string }{
	{"tasks",
		`CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually'))`,
		`CHECK (state = 'pending' OR state = 'in_progress' OR state = 'complete' OR state = 'error' OR state = 'cancelled' OR state = 'resolved_manually')`},
	{"steps",
		`CHECK (state IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually', 'skipped'))`,
		`CHECK (state = 'pending' OR state = 'in_progress' OR state = 'complete' OR state = 'error' OR state = 'cancelled' OR state = 'resolved_manually' OR state = 'skipped')`},
}

// Index definitions of tasks_finished before and after migration 23. The
// new predicate names the two unfinished states instead of the four
// finished ones; finishedStates repeats it for the planner.
const (
	tasksFinishedInList = `CREATE INDEX tasks_finished ON tasks (namespace, name, updated_at, id)
    WHERE state IN ('complete', 'error', 'cancelled', 'resolved_manually')`
	tasksFinishedNotIn = `CREATE INDEX tasks_finished ON tasks (namespace, name, updated_at, id)
    WHERE state NOT IN ('pending', 'in_progress')`
)

// stateChecksMigration is migration 23 for goose.
func stateChecksMigration() *goose.Migration {
	return goose.NewGoMigration(migrationStateChecks,
		&goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			return rewriteStateChecks(ctx, tx, true)
		}},
		&goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			return rewriteStateChecks(ctx, tx, false)
		}})
}

// rewriteStateChecks applies the edits (up) or undoes them. A definition
// that does not hold the text being replaced exactly once fails the
// migration rather than being edited blindly.
func rewriteStateChecks(ctx context.Context, tx *sql.Tx, up bool) error {
	defs := make(map[string]string, len(stateCheckEdits))
	for _, e := range stateCheckEdits {
		from, to := e.inList, e.orChain
		if !up {
			from, to = to, from
		}
		var def string
		if err := tx.QueryRowContext(ctx, `SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?`, e.table).Scan(&def); err != nil {
			return fmt.Errorf("read the definition of %s: %w", e.table, err)
		}
		if n := strings.Count(def, from); n != 1 {
			return fmt.Errorf("the definition of %s holds %q %d times, not once", e.table, from, n)
		}
		defs[e.table] = strings.Replace(def, from, to, 1)
	}
	var version int64
	if err := tx.QueryRowContext(ctx, `PRAGMA schema_version`).Scan(&version); err != nil {
		return fmt.Errorf("read schema_version: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `PRAGMA writable_schema = ON`); err != nil {
		return fmt.Errorf("writable_schema: %w", err)
	}
	for table, def := range defs {
		if _, err := tx.ExecContext(ctx, `UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = ?`, def, table); err != nil {
			return fmt.Errorf("rewrite the definition of %s: %w", table, err)
		}
	}
	// PRAGMA takes no parameters; version is an integer read above.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA schema_version = %d`, version+1)); err != nil {
		return fmt.Errorf("bump schema_version: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `PRAGMA writable_schema = OFF`); err != nil {
		return fmt.Errorf("writable_schema: %w", err)
	}
	index := tasksFinishedNotIn
	if !up {
		index = tasksFinishedInList
	}
	if _, err := tx.ExecContext(ctx, `DROP INDEX tasks_finished`); err != nil {
		return fmt.Errorf("drop tasks_finished: %w", err)
	}
	if _, err := tx.ExecContext(ctx, index); err != nil {
		return fmt.Errorf("create tasks_finished: %w", err)
	}
	return nil
}
