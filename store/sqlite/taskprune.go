package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/store"
)

// taskPruneCandidates finds up to ?2 tasks TaskPrune may delete: finished
// before ?1 and not in error, with no transition above the event log's
// floor (nor the newest row of the table, whose seq the next transition
// would otherwise be numbered after again: see migration 00006), no step
// running, no child unfinished (an errored child may still be retried and
// report to its parent), and no parent kept (whose step names it: a child
// goes after its parent). Without an ORDER BY, SQLite walks
// tasks_state_id, each state's tasks by id and so oldest first, and stops
// at the limit, or, with an ID bound (taskPruneBefore, ?3), at the bound:
// the bound is a clause of its own, not one that also holds when ?3 is
// empty, which would keep SQLite from using it as the index's range.
const taskPruneCandidates = `SELECT k.id FROM tasks k
	WHERE k.state IN ('complete', 'cancelled', 'resolved_manually') AND k.updated_at < ?1 %s
	AND NOT EXISTS (SELECT 1 FROM transitions t WHERE t.task_id = k.id
		AND (t.seq > (SELECT seq FROM event_floor WHERE id = 1) OR t.seq >= (SELECT max(seq) FROM transitions)))
	AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.task_id = k.id AND s.state = 'in_progress')
	AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_task_id = k.id
		AND c.state NOT IN ('complete', 'cancelled', 'resolved_manually'))
	AND NOT EXISTS (SELECT 1 FROM tasks p WHERE p.id = k.parent_task_id)
	LIMIT ?2`

// taskPruneBefore is taskPruneCandidates' ID bound.
const taskPruneBefore = `AND k.id < ?3`

// taskPruneDeletes delete what is stored of the tasks whose ids ?1 holds
// (a JSON array), the tasks last: steps reference them. Signals go with
// their task (ON DELETE CASCADE).
var taskPruneDeletes = []string{
	`DELETE FROM transitions WHERE task_id IN (SELECT value FROM json_each(?1))`,
	`DELETE FROM steps WHERE task_id IN (SELECT value FROM json_each(?1))`,
	`DELETE FROM admission_entries WHERE task_id IN (SELECT value FROM json_each(?1))`,
	`DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?1))`,
}

// TaskPrune implements store.Store. It runs as one write of the group
// committer, so the candidates it reads are still candidates when it
// deletes them.
func (s *Store) TaskPrune(ctx context.Context, params *store.TaskPruneParams) (*store.TaskPruneResult, error) {
	if params == nil || params.Before.IsZero() {
		return nil, errors.New("TaskPrune: params.Before is required")
	}
	limit := params.Limit
	if limit <= 0 {
		limit = store.DefaultTaskPruneLimit
	}
	var res *store.TaskPruneResult
	err := s.write(ctx, "TaskPrune", func(ctx context.Context, tx *wtx) error {
		res = &store.TaskPruneResult{}
		var ids []string
		query, args := fmt.Sprintf(taskPruneCandidates, ""), []any{toNanos(params.Before), limit}
		if params.BeforeID != "" {
			query, args = fmt.Sprintf(taskPruneCandidates, taskPruneBefore), append(args, params.BeforeID)
		}
		if err := tx.SelectContext(ctx, &ids, query, args...); err != nil {
			return fmt.Errorf("find tasks to prune: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		list, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		for _, q := range taskPruneDeletes {
			if _, err := tx.ExecContext(ctx, q, string(list)); err != nil {
				return fmt.Errorf("delete %d finished tasks: %w", len(ids), err)
			}
		}
		res.Deleted, res.More = len(ids), len(ids) == limit
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
