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
	// that lease is live. It reads the task's owner as a scalar subquery
	// rather than by a join, or an EXISTS: measured on the writer
	// connection, this form costs about 1 µs, either of those 8 to 9.
	sqlFence = `SELECT 1 FROM leases
		WHERE token = ?2 AND expires_at > ?3 AND token = (SELECT owner_token FROM tasks WHERE id = ?1)`
	// completed_at is kept once set: a completed task that is later
	// cancelled still records when it completed. ?5, when not 0, fences
	// the change as sqlFence does (the task is owned by lease ?5, live at
	// ?2), so a fenced advance that only moves its task needs no separate
	// read.
	sqlUpdateTask = `UPDATE tasks SET state = ?1, updated_at = ?2,
		completed_at = CASE WHEN ?1 = 'complete' THEN ?2 ELSE completed_at END
		WHERE id = ?3 AND state = ?4
		AND (?5 = 0 OR (owner_token = ?5 AND (SELECT expires_at FROM leases WHERE token = ?5) > ?2))`
	// One SET for every kind of step change, so each statement using it is
	// prepared once: a positive max_attempts replaces the stored one,
	// non-NULL results replace the stored ones, a change to complete clears
	// the error and a given error (?7) replaces it; a rerun (?15) clears
	// results and error and counts a generation.
	updateStepSet = `UPDATE steps SET state = ?1, attempts = ?2, next_retry_at = ?3, updated_at = ?4,
		max_attempts = CASE WHEN ?5 > 0 THEN ?5 ELSE max_attempts END,
		results = CASE WHEN ?15 THEN NULL ELSE COALESCE(?6, results) END,
		error_message = CASE WHEN ?1 = 'complete' OR ?15 THEN NULL WHEN ?7 THEN ?8 ELSE error_message END,
		error_class = CASE WHEN ?1 = 'complete' OR ?15 THEN NULL WHEN ?7 THEN ?9 ELSE error_class END,
		error_retryable = CASE WHEN ?1 = 'complete' OR ?15 THEN NULL WHEN ?7 THEN ?10 ELSE error_retryable END,
		generation = generation + ?15
		WHERE id = ?11 AND task_id = ?12 AND state = ?13 AND attempts = ?14`
	// sqlUpdateStep applies a step change whatever the step's name and
	// returns the stored name.
	sqlUpdateStep = updateStepSet + `
		RETURNING name`
	// sqlUpdateStepNamed is the common case, a change that names its step:
	// it also requires the stored name to be ?16, so the caller knows the
	// name without RETURNING, which would make the write a query (a result
	// set to step through, and in database/sql a goroutine per call).
	// ?17, when not 0, fences the change as sqlFence does, so a fenced
	// advance needs no separate read. A change that matches no row is
	// retried with sqlFence and sqlUpdateStep to learn why.
	// The fence is written with scalar subqueries, as in sqlFence: an
	// EXISTS here would multiply the statement's cost by six.
	sqlUpdateStepNamed = updateStepSet + ` AND name = ?16
		AND (?17 = 0 OR ((SELECT owner_token FROM tasks WHERE id = ?12) = ?17
			AND (SELECT expires_at FROM leases WHERE token = ?17) > ?4))`

	// The savepoint each request of a batch runs under when the batch runs
	// again after a request failed (see commitBatch); prepared, since every
	// request then runs two of them.
	// The committer's transaction. IMMEDIATE takes the write lock at once,
	// so a batch never fails half way on another writer of the file.
	sqlBegin    = `BEGIN IMMEDIATE`
	sqlCommit   = `COMMIT`
	sqlRollback = `ROLLBACK`

	sqlSavepoint         = `SAVEPOINT request`
	sqlReleaseSavepoint  = `RELEASE request`
	sqlRollbackSavepoint = `ROLLBACK TO request`
)

var writeStatements = []string{sqlUpdateStep, sqlFence,
	sqlSavepoint, sqlReleaseSavepoint, sqlRollbackSavepoint,
	sqlAdmissionEntries, sqlPutAdmissionEntry, sqlDeleteAdmissionEntry, sqlRateLimit, sqlBucket, sqlPutBucket, sqlAdmissionHolders, sqlAdmissionLine,
	sqlAdmissionTaskLine, sqlAdmissionTaskRows, sqlAdmissionRelease}

// rawStatements are the write statements run through rawWriter: the
// most frequent ones.
var rawStatements = append(append([]string{sqlInsertTask, sqlUpdateTask, sqlUpdateStepNamed}, transitionInserts[:]...), stepInserts[:]...)

// prepareWrites prepares the write statements on the writer's connection,
// where the committer runs them directly: database/sql would bind a
// statement prepared on the pool to each transaction anew.
func prepareWrites(ctx context.Context, conn *sqlx.Conn) (map[string]*sql.Stmt, error) {
	stmts := make(map[string]*sql.Stmt, len(writeStatements))
	for _, q := range writeStatements {
		st, err := conn.PrepareContext(ctx, q)
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

// wtx is the committer's transaction as one request of a batch sees it: the
// writer's connection, inside the transaction the committer began on it.
// Its Exec and Query run the statements prepared at Open when the text is
// one of them; any other text runs as a plain statement.
//
// It is the connection, not a database/sql Tx, because a Tx starts a
// goroutine when it begins and another for each query run in it, to watch
// its context, and wakes each one when it ends: a few goroutines started
// and woken per commit, on the committer's path, for a context that the
// committer never cancels (context.Background).
type wtx struct {
	*sqlx.Conn
	stmts   map[string]*sql.Stmt
	buckets *buckets
	// raw runs the hottest statements without database/sql (raw.go).
	raw *rawWriter
	// released are tasks whose admission entries this request released;
	// the batch deletes them once, with the rest, if the request stands.
	released []string
	// transitions are the transitions this request stored; the batch
	// inserts them, with the rest, if the request stands (see
	// insertTransition).
	transitions []pendingTransition
	// floor is where this request (an EventPrune) moved the event log's
	// floor; 0 if it did not.
	floor int64
	// seqBase is the least seq new transitions may follow: the store's
	// last restore point's, or 0 (see backup.go).
	seqBase int64
}

func (t *wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmts[query]; st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.Conn.ExecContext(ctx, query, args...)
}

func (t *wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmts[query]; st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.Conn.QueryContext(ctx, query, args...)
}

func (t *wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmts[query]; st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.Conn.QueryRowContext(ctx, query, args...)
}

// closeStatements releases the prepared statements.
func closeStatements(stmts map[string]*sql.Stmt) error {
	var errs []error
	for _, s := range stmts {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
