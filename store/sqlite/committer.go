package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/mattn/go-sqlite3"

	"github.com/tasker-go/tasker/store"
)

// writeRequest is one write waiting for the committer. apply runs inside the
// batch transaction, under the request's own savepoint, and stores its result
// in the caller's variables; the caller reads them only after done delivers,
// which orders the two goroutines.
type writeRequest struct {
	op    string
	apply func(ctx context.Context, tx *wtx) error
	done  chan error // buffered 1, so the committer never blocks answering
}

// write hands apply to the committer and waits for the outcome. Until the
// committer takes the request, ctx can withdraw it; after that the caller
// waits for the real outcome, so it is never told a committed write failed.
func (s *Store) write(ctx context.Context, op string, apply func(ctx context.Context, tx *wtx) error) error {
	if s.isClosed() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req := &writeRequest{op: op, apply: apply, done: make(chan error, 1)}
	s.queued.Add(1)
	select {
	case s.requests <- req:
		s.queued.Add(-1)
	case <-ctx.Done():
		s.queued.Add(-1)
		return fmt.Errorf("%s withdrawn before commit: %w", op, context.Cause(ctx))
	case <-s.closing:
		s.queued.Add(-1)
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	return <-req.done
}

// commitLoop is the only user of the writer connection. It blocks for one
// request, then takes whatever else is already waiting (never waiting for
// more), so batches grow with load and an idle store commits at once.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	batch := make([]*writeRequest, 0, s.maxBatch)
	for {
		select {
		case <-s.closing:
			return
		case req := <-s.requests:
			batch = append(batch[:0], req)
		}
	drain:
		for len(batch) < s.maxBatch {
			select {
			case req := <-s.requests:
				batch = append(batch, req)
			default:
				break drain
			}
		}
		s.taken.Add(int64(len(batch)))
		s.runBatch(batch)
		clear(batch) // drop references so finished requests can be collected
	}
}

// runBatch commits batch in one transaction and answers every request.
func (s *Store) runBatch(batch []*writeRequest) {
	// The batch outlives any caller's ctx: once taken, a request runs to its
	// real outcome. Close waits for this to finish.
	ctx := context.Background()
	outcomes := make([]error, len(batch))
	if err := s.commitBatch(ctx, batch, outcomes); err != nil {
		s.logger.LogAttrs(ctx, slog.LevelError, "sqlite batch failed",
			slog.Int("requests", len(batch)), slog.Any("error", err))
		err = classify(err)
		for _, req := range batch {
			req.done <- fmt.Errorf("%s: batch of %d writes failed: %w", req.op, len(batch), err)
		}
		return
	}
	s.commits.Add(1)
	s.committed.Add(int64(len(batch)))
	for i, req := range batch {
		req.done <- outcomes[i]
	}
}

// commitBatch runs each request under its own savepoint, so a request that
// fails (a conflict, an invalid row) is undone alone while the rest commit.
// A returned error means nothing in the batch was committed.
func (s *Store) commitBatch(ctx context.Context, batch []*writeRequest, outcomes []error) (err error) {
	tx, err := s.writer.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
				err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
			}
		}
	}()
	for i, req := range batch {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT request"); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		if applyErr := req.apply(ctx, &wtx{Tx: tx, stmts: s.stmts}); applyErr != nil {
			outcomes[i] = classify(applyErr)
			// If SQLite already aborted the whole transaction (disk full,
			// I/O error) the savepoint is gone and this fails: then no
			// request in the batch can be trusted and all of them fail.
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO request"); err != nil {
				return fmt.Errorf("roll back %s after %v: %w", req.op, applyErr, err)
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE request"); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// classify marks errors that say the database cannot work right now, as
// opposed to a problem with the request, so callers can retry them.
func classify(err error) error {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrFull, sqlite3.ErrReadonly,
		sqlite3.ErrIoErr, sqlite3.ErrCantOpen, sqlite3.ErrProtocol:
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}
