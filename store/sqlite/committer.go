package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/mattn/go-sqlite3"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
)

// applyFunc is one write as the committer runs it: inside the batch
// transaction, under the write's own savepoint. It stores its result in the
// caller's variables, which the caller reads only after its outcome is
// delivered.
type applyFunc = func(ctx context.Context, tx *wtx) error

// write hands apply to the group committer and waits for the outcome.
func (s *Store) write(ctx context.Context, op string, apply applyFunc) error {
	return s.committer.Submit(ctx, op, apply)
}

// batchFailed logs a batch that committed nothing and classifies its error.
func (s *Store) batchFailed(err error, requests int) error {
	s.logger.LogAttrs(context.Background(), slog.LevelError, "sqlite batch failed",
		slog.Int("requests", requests), slog.Any("error", err))
	return classify(err)
}

// errSavepointsNeeded ends a batch run without savepoints in which a
// request failed: the transaction is rolled back and the batch runs again,
// each request under its own savepoint.
var errSavepointsNeeded = errors.New("a request failed in a batch run without savepoints")

// commitBatch commits the batch's requests in one transaction. It first
// runs them one after another without savepoints, since nearly every batch
// commits whole and a savepoint copies every page a request first changes
// into its sub-journal (with a hundred requests changing the same few hot
// pages, a copy of each of them per request). If a request fails, that run
// is rolled back whole and the batch runs again with a savepoint per
// request, so the failed request is undone alone while the rest commit.
// The requests' work may run twice: it keeps what it reports in the
// caller's variables, which the second run sets afresh. A returned error
// means nothing in the batch was committed.
func (s *Store) commitBatch(batch []*groupcommit.Request[applyFunc], outcomes []error) error {
	err := s.runBatch(batch, outcomes, false)
	if !errors.Is(err, errSavepointsNeeded) {
		return err
	}
	clear(outcomes)
	// The rate-limit cache holds the draws of the run rolled back: it
	// starts over from what is stored.
	s.buckets.invalidate()
	return s.runBatch(batch, outcomes, true)
}

// runBatch runs the batch in one transaction and commits it: with
// savepoints, each request under its own, so a request that fails (a
// conflict, an invalid row) is undone alone while the rest commit; without
// them, the first request to fail rolls back the whole transaction and
// returns errSavepointsNeeded. What the standing requests collected for the
// whole batch (their transitions, their released admission entries) is
// written after the last of them, just before the commit.
func (s *Store) runBatch(batch []*groupcommit.Request[applyFunc], outcomes []error, savepoints bool) (err error) {
	// The batch outlives any caller's ctx: once taken, a request runs to its
	// real outcome. Close waits for this to finish.
	ctx := context.Background()
	if s.finishCkpt.Load() {
		s.finishCheckpoint()
	}
	// The transaction is begun and ended with statements on the writer's
	// connection rather than as a database/sql Tx (see wtx).
	if _, err := s.wconn.ExecContext(ctx, sqlBegin); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			if rbErr := s.rollback(ctx); rbErr != nil {
				err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
			}
		}
	}()
	// The transaction holds the write lock (BEGIN IMMEDIATE): if another
	// writer on the same file committed since the last batch, the rate-limit
	// cache may be stale, so it starts over.
	var version int64
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&version); err != nil {
		return fmt.Errorf("read data_version: %w", err)
	}
	if s.buckets.stale(version) {
		var keys []string
		if err := s.wconn.SelectContext(ctx, &keys, sqlRateLines); err != nil {
			return fmt.Errorf("read rate-limit lines: %w", err)
		}
		s.buckets.reset(version, keys)
	}
	// released are the tasks whose admission entries the batch's requests
	// released (tasks that ended), deleted in one statement at the end;
	// transitions are the transitions they stored, inserted at the end.
	var (
		released    []string
		transitions = s.pending[:0]
		floor       int64
	)
	defer func() {
		// Kept for the next batch, emptied so it holds no transition.
		clear(transitions)
		s.pending = transitions[:0]
	}()
	w := &wtx{Conn: s.wconn, stmts: s.stmts, buckets: s.buckets, raw: s.raw, seqBase: s.seqBase()}
	for i, req := range batch {
		if savepoints {
			if _, err := w.ExecContext(ctx, sqlSavepoint); err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
		}
		// One wtx serves every request in turn, keeping its slices'
		// storage; what a request collected is taken only if it stands.
		w.released, w.transitions, w.floor = w.released[:0], w.transitions[:0], 0
		applyErr := req.Work(ctx, w)
		if applyErr == nil {
			released = append(released, w.released...)
			transitions = append(transitions, w.transitions...)
			floor = max(floor, w.floor)
		} else {
			if !savepoints {
				return errSavepointsNeeded
			}
			outcomes[i] = classify(applyErr)
			// If SQLite already aborted the whole transaction (disk full,
			// I/O error) the savepoint is gone and this fails: then no
			// request in the batch can be trusted and all of them fail.
			if _, err := w.ExecContext(ctx, sqlRollbackSavepoint); err != nil {
				return fmt.Errorf("roll back %s after %v: %w", req.Op, applyErr, err)
			}
		}
		if savepoints {
			if _, err := w.ExecContext(ctx, sqlReleaseSavepoint); err != nil {
				return fmt.Errorf("release savepoint: %w", err)
			}
		}
	}
	w.released, w.transitions = nil, nil
	if err := flushTransitions(ctx, w, transitions); err != nil {
		return err
	}
	entries, err := s.keys.entries(ctx, w, transitions)
	if err != nil {
		return err
	}
	if err := s.buckets.flush(ctx, w); err != nil {
		return err
	}
	if len(released) > 0 {
		ids, _ := json.Marshal(released)
		if _, err := w.ExecContext(ctx, sqlAdmissionRelease, string(ids)); err != nil {
			return fmt.Errorf("release admission entries of %d ended tasks: %w", len(released), err)
		}
	}
	if _, err := s.wconn.ExecContext(ctx, sqlCommit); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	// Before the requests are answered, so a follower woken by what they
	// committed finds it here.
	s.tail.append(entries)
	if floor > 0 {
		s.tail.trim(floor)
	}
	return nil
}

// rollback ends the writer's transaction, if one is open. A COMMIT that
// failed may have left it open (SQLITE_BUSY) or ended it (an I/O error rolls
// back by itself); either way the next batch must begin afresh.
func (s *Store) rollback(ctx context.Context) error {
	var open bool
	if err := s.wconn.Raw(func(dc any) error {
		open = !dc.(*sqlite3.SQLiteConn).AutoCommit()
		return nil
	}); err != nil || !open {
		return err
	}
	_, err := s.wconn.ExecContext(ctx, sqlRollback)
	return err
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
