package sqlite

import (
	"context"
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
		query, args, err := sqlx.In(`SELECT `+stepColumns+` FROM steps
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
