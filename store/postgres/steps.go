package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/store"
)

// StepList implements store.Store. One query serves any number of tasks: the
// IDs go as one array parameter, which has no size limit to chunk around.
func (s *Store) StepList(ctx context.Context, taskIDs ...string) ([]*store.Step, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("StepList: %w", store.ErrClosed)
	}
	if len(taskIDs) == 0 {
		return nil, nil
	}
	ids := slices.Compact(slices.Sorted(slices.Values(taskIDs)))
	rows, err := s.reader.Query(ctx, `SELECT `+stepReadColumns+` FROM steps
		WHERE task_id = ANY($1::text[]) ORDER BY task_id, position`, ids)
	if err != nil {
		return nil, s.readErr(err, "list steps of %d tasks", len(ids))
	}
	steps, err := collect(rows, scanStep)
	if err != nil {
		return nil, s.readErr(err, "list steps of %d tasks", len(ids))
	}
	return steps, nil
}

// TransitionList implements store.Store.
func (s *Store) TransitionList(ctx context.Context, params *store.TransitionListParams) ([]*store.Transition, error) {
	if params == nil {
		return nil, fmt.Errorf("TransitionList: params are nil")
	}
	if s.isClosed() {
		return nil, fmt.Errorf("TransitionList: %w", store.ErrClosed)
	}
	rows, err := s.reader.Query(ctx, `SELECT `+transitionColumns+` FROM transitions
		WHERE task_id = $1 AND seq > $2 ORDER BY seq`, params.TaskID, params.AfterSeq)
	if err != nil {
		return nil, s.readErr(err, "list transitions of task %s", params.TaskID)
	}
	trs, err := collect(rows, scanTransition)
	if err != nil {
		return nil, s.readErr(err, "list transitions of task %s", params.TaskID)
	}
	return trs, nil
}

// TaskSnapshot implements store.Store. The three reads share one
// repeatable-read transaction, so they see one snapshot.
func (s *Store) TaskSnapshot(ctx context.Context, id string) (_ *store.TaskSnapshot, err error) {
	if s.isClosed() {
		return nil, fmt.Errorf("TaskSnapshot: %w", store.ErrClosed)
	}
	tx, err := s.reader.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, s.readErr(err, "read task %s", id)
	}
	// A read-only transaction has nothing to undo; rolling back only
	// returns the connection.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	snap := &store.TaskSnapshot{}
	snap.Task, err = scanTask(tx.QueryRow(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("task %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "read task %s", id)
	}
	rows, err := tx.Query(ctx, `SELECT `+stepReadColumns+` FROM steps WHERE task_id = $1 ORDER BY position`, id)
	if err != nil {
		return nil, s.readErr(err, "read steps of task %s", id)
	}
	if snap.Steps, err = collect(rows, scanStep); err != nil {
		return nil, s.readErr(err, "read steps of task %s", id)
	}
	rows, err = tx.Query(ctx, `SELECT `+transitionColumns+` FROM transitions WHERE task_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, s.readErr(err, "read transitions of task %s", id)
	}
	if snap.Transitions, err = collect(rows, scanTransition); err != nil {
		return nil, s.readErr(err, "read transitions of task %s", id)
	}
	return snap, nil
}
