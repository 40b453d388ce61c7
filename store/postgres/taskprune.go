package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/store"
)

// taskPruneCandidatesSQL finds and locks up to $2 tasks TaskPrune may
// delete: finished before $1 and not in error (and, given an ID bound $5,
// with a smaller ID), with no transition above the event log's floor ($3,
// $4) in log order, no step running, no child unfinished (an errored child
// may still be retried and report to its parent), and no parent kept
// (whose step names it: a child goes after its parent). The rows are
// locked, so a change racing the delete (a rerun, a cancel) either commits
// first, and the task no longer qualifies when its row is checked again,
// or waits and then finds it gone; SKIP LOCKED lets coordinators pruning
// at once share the work.
const taskPruneCandidatesSQL = `SELECT k.id FROM tasks k
	WHERE k.state IN ('complete', 'cancelled', 'resolved_manually') AND k.updated_at < $1 %s
	AND NOT EXISTS (SELECT 1 FROM transitions t WHERE t.task_id = k.id AND (t.xact, t.seq) > ($3::bigint, $4::bigint))
	AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.task_id = k.id AND s.state = 'in_progress')
	AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_task_id = k.id
		AND c.state NOT IN ('complete', 'cancelled', 'resolved_manually'))
	AND NOT EXISTS (SELECT 1 FROM tasks p WHERE p.id = k.parent_task_id)
	LIMIT $2
	FOR UPDATE OF k SKIP LOCKED`

// taskPruneDeletesSQL delete what is stored of the tasks $1 names, the
// tasks last: steps reference them. Signals go with their task (ON DELETE
// CASCADE).
var taskPruneDeletesSQL = []string{
	`DELETE FROM transitions WHERE task_id = ANY($1::text[])`,
	`DELETE FROM steps WHERE task_id = ANY($1::text[])`,
	`DELETE FROM admission_entries WHERE task_id = ANY($1::text[])`,
	`DELETE FROM tasks WHERE id = ANY($1::text[])`,
}

// TaskPrune implements store.Store, in a transaction of its own outside
// the group committer, as EventPrune does.
func (s *Store) TaskPrune(ctx context.Context, params *store.TaskPruneParams) (*store.TaskPruneResult, error) {
	if params == nil || params.Before.IsZero() {
		return nil, errors.New("TaskPrune: params.Before is required")
	}
	if s.isClosed() {
		return nil, fmt.Errorf("TaskPrune: %w", store.ErrClosed)
	}
	limit := params.Limit
	if limit <= 0 {
		limit = store.DefaultTaskPruneLimit
	}
	res := &store.TaskPruneResult{}
	err := pgx.BeginFunc(ctx, s.reader, func(tx pgx.Tx) error {
		var floor position
		if err := tx.QueryRow(ctx, `SELECT xact, seq FROM event_floor WHERE id = 1`).Scan(&floor.xact, &floor.seq); err != nil {
			return fmt.Errorf("read the event floor: %w", err)
		}
		query, args := fmt.Sprintf(taskPruneCandidatesSQL, ""), []any{toNanos(params.Before), limit, floor.xact, floor.seq}
		if params.BeforeID != "" {
			query, args = fmt.Sprintf(taskPruneCandidatesSQL, `AND k.id < $5`), append(args, params.BeforeID)
		}
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("find tasks to prune: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find tasks to prune: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		for _, q := range taskPruneDeletesSQL {
			if _, err := tx.Exec(ctx, q, ids); err != nil {
				return fmt.Errorf("delete %d finished tasks: %w", len(ids), err)
			}
		}
		res.Deleted, res.More = len(ids), len(ids) == limit
		return nil
	})
	if err != nil {
		return nil, s.readErr(err, "prune tasks finished before %s", params.Before)
	}
	return res, nil
}
