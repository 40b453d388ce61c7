package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
)

// Adding a write (say, for leases): give its SQL a name in writeStatements,
// queue it from the method with pipe.query, and if it has a precondition,
// make the statement itself raise TK409 (or TK404) when the precondition
// fails, as advanceStepSQL does, so the server stops the pipeline at it.
// A write that instead noticed a refusal only when reading its result would
// let the rest of the batch run on top of changes about to be undone.

// queueFunc is one write as the committer runs it: it adds the write's
// statements to a pipeline, with functions that read their results into the
// caller's variables; the caller reads them only after its outcome is
// delivered. It may run more than once (when an earlier write in the batch
// is refused, the rest are sent again), so it must reset what its readers
// fill.
type queueFunc = func(p *pipe)

// write hands queue to the group committer and waits for the outcome.
func (s *Store) write(ctx context.Context, op string, queue queueFunc) error {
	return s.committer.Submit(ctx, op, queue)
}

// batchFailed logs a batch that committed nothing and classifies its error.
func (s *Store) batchFailed(err error, requests int) error {
	s.logger.LogAttrs(context.Background(), slog.LevelError, "postgres batch failed",
		slog.Int("requests", requests), slog.Any("error", err))
	return classify(err)
}

// Statements the committer itself runs. Like every write statement they are
// prepared by name on the writer connection (prepareWriteStatements), so a
// batch never waits for a prepare round trip.
const (
	stmtBegin      = "tasker_begin"
	stmtCommit     = "tasker_commit"
	stmtRollback   = "tasker_rollback"
	stmtSavepoint  = "tasker_savepoint"
	stmtRelease    = "tasker_release"
	stmtRollbackTo = "tasker_rollback_to"
)

// savepointRun caps the requests of one transaction run with savepoints.
// Each request that writes under a savepoint gets a subtransaction XID, and
// a backend caches only 64 of those (PGPROC_MAX_CACHED_SUBXIDS): past that
// its transaction "overflows", and every session's snapshot, while it is
// open, must look its XIDs up in pg_subtrans. A batch can be larger than
// this (Config.MaxBatch): its run with savepoints is then split into
// transactions of this many requests each.
const savepointRun = 64

// commitBatch runs the batch as one transaction in as few round trips as it
// can: the first pipeline carries BEGIN, every request and COMMIT, with no
// savepoints, since nearly every batch commits whole and a savepoint is a
// subtransaction to PostgreSQL (see savepointRun). A request refused by the
// server stops the pipeline there and aborts the transaction; the batch is
// then rolled back and run again, each request under its own savepoint, in
// transactions of at most savepointRun requests (runWithSavepoints). So a
// batch costs one round trip, or, with refusals, two or more plus one per
// refused request. A returned error means nothing in the batch was
// committed; if a later transaction of the run with savepoints fails, the
// requests of the earlier ones stay committed and each later request gets
// the error as its outcome. Requests can be queued more than once: each
// sets its results afresh when queued.
func (s *Store) commitBatch(batch []*groupcommit.Request[queueFunc], outcomes []error) (err error) {
	// The batch outlives any caller's ctx: once taken, a request runs to its
	// real outcome. Close waits for this to finish.
	ctx := context.Background()
	conn, err := s.writer.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire writer connection: %w", err)
	}
	defer func() {
		if err != nil {
			abandon(ctx, conn.Conn())
		}
		conn.Release()
	}()

	p := &pipe{req: -1, ctx: ctx, conn: conn.Conn(), grouping: true}
	p.exec(stmtBegin)
	for i := 0; i < len(batch) && p.err == nil; i++ {
		p.req = i
		batch[i].Work(p)
	}
	p.req = -1
	failed, err := p.failed, p.err
	if err == nil {
		p.commit()
		failed, err = p.send(ctx, conn.Conn())
	}
	if err == nil || failed < 0 {
		return err
	}
	// The refusal took the whole transaction with it: start again, with
	// savepoints.
	if _, rbErr := conn.Exec(ctx, stmtRollback); rbErr != nil {
		return fmt.Errorf("roll back the batch after %v: %w", err, rbErr)
	}
	for from := 0; from < len(batch); from += savepointRun {
		to := min(from+savepointRun, len(batch))
		runErr := runWithSavepoints(ctx, conn.Conn(), batch[from:to], outcomes[from:to])
		if runErr == nil {
			continue
		}
		if from == 0 {
			return runErr
		}
		abandon(ctx, conn.Conn())
		runErr = s.batchFailed(runErr, len(batch)-from)
		for i := from; i < len(batch); i++ {
			outcomes[i] = fmt.Errorf("%s: %d of a batch's %d writes failed after the %d before them committed: %w",
				batch[i].Op, len(batch)-from, len(batch), from, runErr)
		}
		return nil
	}
	return nil
}

// runWithSavepoints runs requests in one transaction, each under its own
// savepoint: a refusal stops the pipeline at that request, the next
// pipeline rolls it back to its savepoint and carries the requests after
// it, and so on. It records each refusal in outcomes and returns an error
// only when nothing was committed.
func runWithSavepoints(ctx context.Context, conn *pgx.Conn, batch []*groupcommit.Request[queueFunc], outcomes []error) error {
	next, begun, refused := 0, false, false
	for {
		p := &pipe{req: -1, ctx: ctx, conn: conn}
		if !begun {
			p.exec(stmtBegin)
		}
		if refused {
			// The savepoint of the refused request is the only one open.
			p.exec(stmtRollbackTo)
			p.exec(stmtRelease)
		}
		for i := next; i < len(batch) && p.err == nil; i++ {
			p.req = i
			p.exec(stmtSavepoint)
			batch[i].Work(p)
			p.exec(stmtRelease)
		}
		p.req = -1
		failed, err := p.failed, p.err
		if err == nil {
			p.commit()
			failed, err = p.send(ctx, conn)
		}
		if err == nil {
			return nil
		}
		if failed < 0 {
			return err
		}
		begun, refused = true, true
		outcomes[failed] = classify(err)
		next = failed + 1
	}
}

// abandon ends whatever transaction a failed batch left open, so the
// connection can be reused. If that fails too, the pool drops the
// connection on release, because it is not idle.
func abandon(ctx context.Context, conn *pgx.Conn) {
	pc := conn.PgConn()
	if pc.IsClosed() || pc.TxStatus() == 'I' {
		return
	}
	_, _ = conn.Exec(ctx, stmtRollback)
}

// pipe is one round trip: statements queued in order, each with the function
// that reads its result and the request it belongs to.
type pipe struct {
	batch pgx.Batch
	stmts []queuedStmt
	req   int // the request now queuing, or -1 for the committer's own statements

	// ctx and conn serve interact, which needs answers in the middle of a
	// request; err and failed record an interaction's failure, after which
	// nothing more is queued and the batch goes the way of a refused
	// statement.
	ctx    context.Context
	conn   *pgx.Conn
	err    error
	failed int

	// grouping lets plain advances gather in group (see advanceGroup) and
	// plain creates in creates (see createGroup). It
	// is set for a batch's first run and not for the run with savepoints,
	// where each request must be queued on its own.
	grouping bool
	group    *advanceGroup
	creates  *createGroup
}

// interact runs fn in the transaction, at this point of the current
// request: what is queued is sent first, so fn sees it. A request that must
// decide on what the database holds (an admission) does so here, at the
// cost of a round trip.
func (p *pipe) interact(fn func(ctx context.Context, conn *pgx.Conn) error) {
	if p.err != nil {
		return
	}
	p.flushGroup()
	if len(p.stmts) > 0 {
		failed, err := p.send(p.ctx, p.conn)
		p.batch, p.stmts = pgx.Batch{}, nil
		if err != nil {
			p.err, p.failed = err, failed
			return
		}
	}
	if err := fn(p.ctx, p.conn); err != nil {
		var pgErr *pgconn.PgError
		p.err, p.failed = err, -1
		if p.req >= 0 && errors.As(err, &pgErr) && p.conn.PgConn().TxStatus() == 'E' {
			// The request's savepoint undoes it, or, in a first run
			// without savepoints, the batch starts again with them.
			p.failed = p.req
		}
	}
}

type queuedStmt struct {
	req  int
	read func(br pgx.BatchResults) error
	// explain, if set, turns the server refusing this statement into the
	// request's error (a conflict or a missing row, with detail).
	explain func(*pgconn.PgError) error
}

// exec queues a statement whose result only matters if it is an error.
func (p *pipe) exec(name string, args ...any) {
	p.add(name, args, execResult, nil)
}

// execResult reads the result of a statement that returns no rows.
func execResult(br pgx.BatchResults) error {
	_, err := br.Exec()
	return err
}

// query queues a statement and calls each for every row it returns.
func (p *pipe) query(name string, args []any, each func(pgx.Rows) error, explain func(*pgconn.PgError) error) {
	p.add(name, args, readRows(each), explain)
}

// readRows reads a statement's result by calling each for every row.
func readRows(each func(pgx.Rows) error) func(pgx.BatchResults) error {
	return func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := each(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
}

// add queues a statement after whatever the pipe has gathered in its group.
func (p *pipe) add(name string, args []any, read func(pgx.BatchResults) error, explain func(*pgconn.PgError) error) {
	p.flushGroup()
	p.addRaw(name, args, read, explain)
}

// addRaw queues a statement as it comes, the group's own included.
func (p *pipe) addRaw(name string, args []any, read func(pgx.BatchResults) error, explain func(*pgconn.PgError) error) {
	if p.err != nil {
		return
	}
	p.batch.Queue(name, args...)
	p.stmts = append(p.stmts, queuedStmt{req: p.req, read: read, explain: explain})
}

// commit queues COMMIT. Its tag is checked because COMMIT in a failed
// transaction does not fail: it rolls back and says ROLLBACK.
func (p *pipe) commit() {
	p.add(stmtCommit, nil, func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		if err == nil && tag.String() != "COMMIT" {
			err = fmt.Errorf("COMMIT answered %q", tag.String())
		}
		return err
	}, nil)
}

// send runs the pipeline and reads every result in order. It stops at the
// first error: if the server refused a statement of a request (the
// transaction is now failed but the connection is fine), it returns that
// request's index and error, and the transaction can go on once that request
// is rolled back to its savepoint. Any other error (the connection, the
// committer's own statements, a row that would not scan) returns index -1:
// the batch cannot be trusted.
func (p *pipe) send(ctx context.Context, conn *pgx.Conn) (failed int, err error) {
	br := conn.SendBatch(ctx, &p.batch)
	for _, st := range p.stmts {
		err := st.read(br)
		if err == nil {
			continue
		}
		// Close reads up to the end of the pipeline; the server skipped
		// every statement after the failed one.
		closeErr := br.Close()
		var pgErr *pgconn.PgError
		if st.req < 0 || !errors.As(err, &pgErr) || conn.PgConn().TxStatus() != 'E' {
			return -1, errors.Join(err, closeErr)
		}
		if st.explain != nil {
			if explained := st.explain(pgErr); explained != nil {
				err = explained
			}
		}
		return st.req, err
	}
	return -1, br.Close()
}

// refusal is the SQLSTATE our precondition functions raise (TK404, TK409,
// TK410 for a lease check, TK423 for a task another lease owns), mapped to the store error it means; ok is
// false for any other error.
func refusal(pgErr *pgconn.PgError) (sentinel error, ok bool) {
	switch pgErr.Code {
	case "TK404":
		return store.ErrNotFound, true
	case "TK409":
		return store.ErrConflict, true
	case "TK410":
		return store.ErrLeaseLost, true
	case "TK423":
		return store.ErrOwned, true
	}
	return nil, false
}

// classify marks errors that say the database cannot work right now, as
// opposed to a problem with the request, so callers can retry them.
func classify(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "25006", // read_only_sql_transaction: a standby, or a read-only database
			pgErr.Code == "40001", // serialization_failure
			pgErr.Code == "40P01", // deadlock_detected
			pgErr.Code == "55P03", // lock_not_available (lock_timeout)
			pgErr.Code == "57014": // query_canceled (statement_timeout)
			return true
		}
		if len(pgErr.Code) < 2 {
			return false
		}
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources: disk full, out of memory, too many connections
			"57", // operator intervention: admin or crash shutdown, cannot connect now
			"58": // system error: I/O error
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	// The caller's own cancellation is not the database's fault.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err)
}

// writeStatements are prepared by name on every writer connection.
func writeStatements() []struct{ name, sql string } {
	return []struct{ name, sql string }{
		{stmtBegin, "BEGIN"},
		{stmtCommit, "COMMIT"},
		{stmtRollback, "ROLLBACK"},
		{stmtSavepoint, "SAVEPOINT request"},
		{stmtRelease, "RELEASE SAVEPOINT request"},
		{stmtRollbackTo, "ROLLBACK TO SAVEPOINT request"},
		{stmtCreateTask, createTaskSQL},
		{stmtCreateDebounced, createDebouncedSQL},
		{stmtCloseDebounce, closeDebounceSQL},
		{stmtDebounce, debounceSQL},
		{stmtAdvanceStep, advanceStepSQL},
		{stmtInsertSteps, insertStepsSQL},
		{stmtAdvanceTask, advanceTaskSQL},
		{stmtTaskExists, taskExistsSQL},
		{stmtAdmissionRelease, `DELETE FROM admission_entries WHERE task_id = $1::text`},
		{stmtRegisterTemplate, registerTemplateSQL},
		{stmtFence, fenceSQL},
		{stmtLeaseAcquire, leaseAcquireSQL},
		{stmtLeaseRenew, leaseRenewSQL},
		{stmtLeaseLive, leaseLiveSQL},
		{stmtTaskClaim, taskClaimSQL},
		{stmtTaskTake, taskTakeSQL},
		{stmtSignalCreate, signalCreateSQL},
		{stmtSignalConsume, signalConsumeSQL},
		{stmtGroupIndexes, groupIndexesSQL},
		{stmtGroupAnyScan, groupAnyScanSQL},
		{stmtGroupFence, groupFenceSQL},
		{stmtGroupSteps, groupStepsSQL},
		{stmtGroupTasks, groupTasksSQL},
		{stmtGroupFree, groupReleaseSQL},
		{stmtGroupCreate, groupCreateSQL},
	}
}

// prepareWriteStatements runs on each new writer connection. Named prepared
// statements, unlike pgx's automatic statement cache, survive a failed
// batch (pgx forgets every cached statement of a batch that had an error),
// so a refused request costs no re-prepare.
func prepareWriteStatements(ctx context.Context, conn *pgx.Conn) error {
	for _, st := range writeStatements() {
		if _, err := conn.Prepare(ctx, st.name, st.sql); err != nil {
			return fmt.Errorf("prepare %s: %w", st.name, err)
		}
	}
	return nil
}
