package sqlite

import (
	"context"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// finishedStates repeats the WHERE of the partial index tasks_finished word
// for word, which is what lets SQLite use it: every state but the two
// unfinished ones (see migrationStateChecks for why not the four finished).
const finishedStates = `state NOT IN ('` + string(state.Pending) + `', '` + string(state.InProgress) + `')`

// taskListFinishedQuery walks tasks_finished backwards from Until to Since
// within one template. The index is named, as for TaskListActive: left to
// itself the planner might prefer tasks_namespace_name_id and read every
// task of the template; INDEXED BY fails the query instead if the index
// ever stops matching.
func taskListFinishedQuery(p *store.TaskListFinishedParams) (string, []any) {
	query := `SELECT ` + taskColumns + ` FROM tasks INDEXED BY tasks_finished
		WHERE ` + finishedStates + ` AND namespace = ? AND name = ? AND updated_at >= ? AND updated_at < ?`
	args := []any{p.Namespace, p.Name, toNanos(p.Since), toNanos(p.Until)}
	if p.Version != "" {
		query += ` AND version = ?`
		args = append(args, p.Version)
	}
	query += ` ORDER BY updated_at DESC, id DESC LIMIT ?`
	return query, append(args, p.Limit)
}

// TaskListFinished implements store.Store.
func (s *Store) TaskListFinished(ctx context.Context, params *store.TaskListFinishedParams) ([]*store.Task, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	query, args := taskListFinishedQuery(params)
	return s.selectTasks(ctx, fmt.Sprintf("list finished tasks of %s/%s", params.Namespace, params.Name), query, args...)
}

// transitionListTasksQuery reads transitions_task_id_seq once per task, in
// task then seq order, which is the order asked for: no sort.
const transitionListTasksQuery = `SELECT ` + transitionColumns + ` FROM transitions
	WHERE task_id IN (?) ORDER BY task_id, seq`

// TransitionListTasks implements store.Store. IDs are sorted and
// deduplicated first, so chunks (each well under SQLite's bound-parameter
// limit) come back in task order and simply concatenate.
func (s *Store) TransitionListTasks(ctx context.Context, taskIDs ...string) ([]*store.Transition, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("TransitionListTasks: %w", store.ErrClosed)
	}
	ids := slices.Compact(slices.Sorted(slices.Values(taskIDs)))
	var out []*store.Transition
	for chunk := range slices.Chunk(ids, stepListChunk) {
		query, args, err := sqlx.In(transitionListTasksQuery, chunk)
		if err != nil {
			return nil, fmt.Errorf("list transitions: %w", err)
		}
		var rows []transitionRow
		if err := s.reader.SelectContext(ctx, &rows, query, args...); err != nil {
			return nil, s.readErr(err, "list transitions of %d tasks", len(chunk))
		}
		for i := range rows {
			out = append(out, rows[i].transition())
		}
	}
	return out, nil
}
