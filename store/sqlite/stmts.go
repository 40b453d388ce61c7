package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// The statements every write runs. They are prepared once on the writer
// connection at Open: SQLite would otherwise parse and plan the same few
// statements for every step of every task, which is most of a write's CPU.
const (
	// A task with a debounce key is inserted open to debounced creates
	// (debounce_open); ?15 is the key.
	sqlInsertTask = `INSERT INTO tasks (` + taskColumns + `, debounce_open)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?15, ?16, ?17, ?15 IS NOT NULL)
		ON CONFLICT DO NOTHING`
	// sqlFence finds the task only if it is owned by the given lease and
	// that lease is live.
	sqlFence = `SELECT 1 FROM tasks JOIN leases ON leases.token = tasks.owner_token
		WHERE tasks.id = ?1 AND tasks.owner_token = ?2 AND leases.expires_at > ?3`
	sqlInsertStep = `INSERT INTO steps (` + stepColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlInsertTransition = `INSERT INTO transitions
		(task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// completed_at is kept once set: a completed task that is later
	// cancelled still records when it completed.
	sqlUpdateTask = `UPDATE tasks SET state = ?1, updated_at = ?2,
		completed_at = CASE WHEN ?1 = 'complete' THEN ?2 ELSE completed_at END
		WHERE id = ?3 AND state = ?4`
	// One text for every kind of step change, so it is prepared once: a
	// positive max_attempts replaces the stored one, non-NULL results
	// replace the stored ones, a change to complete clears the error and a
	// given error (?7) replaces it; a rerun (?15) clears results and error
	// and counts a generation.
	sqlUpdateStep = `UPDATE steps SET state = ?1, attempts = ?2, next_retry_at = ?3, updated_at = ?4,
		max_attempts = CASE WHEN ?5 > 0 THEN ?5 ELSE max_attempts END,
		results = CASE WHEN ?15 THEN NULL ELSE COALESCE(?6, results) END,
		error_message = CASE WHEN ?1 = 'complete' OR ?15 THEN NULL WHEN ?7 THEN ?8 ELSE error_message END,
		error_class = CASE WHEN ?1 = 'complete' OR ?15 THEN NULL WHEN ?7 THEN ?9 ELSE error_class END,
		error_retryable = CASE WHEN ?1 = 'complete' OR ?15 THEN NULL WHEN ?7 THEN ?10 ELSE error_retryable END,
		generation = generation + ?15
		WHERE id = ?11 AND task_id = ?12 AND state = ?13 AND attempts = ?14
		RETURNING name`
)

var writeStatements = []string{sqlInsertTask, sqlInsertStep, sqlInsertTransition, sqlUpdateTask, sqlUpdateStep, sqlFence,
	sqlAdmissionEntries, sqlPutAdmissionEntry, sqlDeleteAdmissionEntry, sqlRateLimit, sqlBucket, sqlPutBucket, sqlAdmissionHolders, sqlAdmissionLine,
	sqlAdmissionTaskLine, sqlAdmissionTaskRows, sqlAdmissionRelease}

// prepareWrites prepares the write statements on the writer connection.
func prepareWrites(ctx context.Context, writer *sqlx.DB) (map[string]*sql.Stmt, error) {
	stmts := make(map[string]*sql.Stmt, len(writeStatements))
	for _, q := range writeStatements {
		st, err := writer.PrepareContext(ctx, q)
		if err != nil {
			for _, s := range stmts {
				_ = s.Close()
			}
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		stmts[q] = st
	}
	return stmts, nil
}

// wtx is the committer's transaction. Its Exec and QueryRow run the
// statements prepared at Open when the text is one of them; any other text
// runs as a plain statement.
type wtx struct {
	*sqlx.Tx
	stmts   map[string]*sql.Stmt
	buckets *buckets
	// released are tasks whose admission entries this request released;
	// the batch deletes them once, with the rest, if the request stands.
	released []string
}

func (t *wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmts[query]; st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmts[query]; st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmts[query]; st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// closeStatements releases the prepared statements.
func closeStatements(stmts map[string]*sql.Stmt) error {
	var errs []error
	for _, s := range stmts {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
