package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"

	"github.com/tasker-go/tasker/store"
)

// stepListChunk keeps each IN list well under SQLite's bound-parameter
// limit however many tasks the caller asks for.
const stepListChunk = 500

// StepList implements store.Store. IDs are sorted and deduplicated first, so
// chunks come back in task order and simply concatenate.
func (s *Store) StepList(ctx context.Context, taskIDs ...string) ([]*store.Step, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("StepList: %w", store.ErrClosed)
	}
	ids := slices.Compact(slices.Sorted(slices.Values(taskIDs)))
	var out []*store.Step
	for chunk := range slices.Chunk(ids, stepListChunk) {
		query, args, err := sqlx.In(`SELECT `+stepReadColumns+` FROM steps
			WHERE task_id IN (?) ORDER BY task_id, position`, chunk)
		if err != nil {
			return nil, fmt.Errorf("list steps: %w", err)
		}
		var rows []stepRow
		if err := s.reader.SelectContext(ctx, &rows, query, args...); err != nil {
			return nil, s.readErr(err, "list steps of %d tasks", len(chunk))
		}
		for i := range rows {
			st, err := rows[i].step()
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// TransitionList implements store.Store.
func (s *Store) TransitionList(ctx context.Context, params *store.TransitionListParams) ([]*store.Transition, error) {
	if params == nil {
		return nil, fmt.Errorf("TransitionList: params are nil")
	}
	if s.isClosed() {
		return nil, fmt.Errorf("TransitionList: %w", store.ErrClosed)
	}
	var rows []transitionRow
	err := s.reader.SelectContext(ctx, &rows, `SELECT `+transitionColumns+` FROM transitions
		WHERE task_id = ? AND seq > ? ORDER BY seq`, params.TaskID, params.AfterSeq)
	if err != nil {
		return nil, s.readErr(err, "list transitions of task %s", params.TaskID)
	}
	out := make([]*store.Transition, len(rows))
	for i := range rows {
		out[i] = rows[i].transition()
	}
	return out, nil
}

// TaskSnapshot implements store.Store. The three reads share one read
// transaction, which in WAL mode sees the database as of its first read.
func (s *Store) TaskSnapshot(ctx context.Context, id string) (_ *store.TaskSnapshot, err error) {
	if s.isClosed() {
		return nil, fmt.Errorf("TaskSnapshot: %w", store.ErrClosed)
	}
	tx, err := s.reader.BeginTxx(ctx, nil)
	if err != nil {
		return nil, s.readErr(err, "read task %s", id)
	}
	defer func() { err = errors.Join(err, tx.Rollback()) }()
	var row taskRow
	err = tx.GetContext(ctx, &row, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("task %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "read task %s", id)
	}
	snap := &store.TaskSnapshot{}
	if snap.Task, err = row.task(); err != nil {
		return nil, err
	}
	var steps []stepRow
	if err := tx.SelectContext(ctx, &steps, `SELECT `+stepReadColumns+` FROM steps
		WHERE task_id = ? ORDER BY position`, id); err != nil {
		return nil, s.readErr(err, "read steps of task %s", id)
	}
	for i := range steps {
		st, err := steps[i].step()
		if err != nil {
			return nil, err
		}
		snap.Steps = append(snap.Steps, st)
	}
	var trs []transitionRow
	if err := tx.SelectContext(ctx, &trs, `SELECT `+transitionColumns+` FROM transitions
		WHERE task_id = ? ORDER BY seq`, id); err != nil {
		return nil, s.readErr(err, "read transitions of task %s", id)
	}
	for i := range trs {
		snap.Transitions = append(snap.Transitions, trs[i].transition())
	}
	return snap, nil
}
