package postgres

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// finishedStates repeats the WHERE of the partial index tasks_finished word
// for word (as literals, not parameters), which is what lets the planner
// prove the index covers the query.
const finishedStates = `state IN ('` + string(state.Complete) + `', '` + string(state.Error) + `', '` +
	string(state.Cancelled) + `', '` + string(state.ResolvedManually) + `')`

// taskListFinishedQuery walks tasks_finished backwards from Until to Since
// within one template, which returns the rows in the order asked for.
func taskListFinishedQuery(p *store.TaskListFinishedParams) (string, []any) {
	query := `SELECT ` + taskColumns + ` FROM tasks
		WHERE ` + finishedStates + ` AND namespace = $1 AND name = $2 AND updated_at >= $3 AND updated_at < $4`
	args := []any{p.Namespace, p.Name, toNanos(p.Since), toNanos(p.Until)}
	if p.Version != "" {
		args = append(args, p.Version)
		query += ` AND version = $` + strconv.Itoa(len(args))
	}
	args = append(args, p.Limit)
	query += ` ORDER BY updated_at DESC, id DESC LIMIT $` + strconv.Itoa(len(args))
	return query, args
}

// TaskListFinished implements store.Store.
func (s *Store) TaskListFinished(ctx context.Context, params *store.TaskListFinishedParams) ([]*store.Task, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	query, args := taskListFinishedQuery(params)
	return s.selectTasks(ctx, fmt.Sprintf("list finished tasks of %s/%s", params.Namespace, params.Name), query, args...)
}

// transitionListTasksQuery walks transitions_task_id_seq for each id of the
// array in turn; with the array sorted that is the order asked for, so the
// plan has no sort.
const transitionListTasksQuery = `SELECT ` + transitionColumns + ` FROM transitions
	WHERE task_id = ANY($1::text[]) ORDER BY task_id, seq`

// TransitionListTasks implements store.Store. One query serves any number
// of tasks: the IDs go as one array parameter.
func (s *Store) TransitionListTasks(ctx context.Context, taskIDs ...string) ([]*store.Transition, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("TransitionListTasks: %w", store.ErrClosed)
	}
	if len(taskIDs) == 0 {
		return nil, nil
	}
	ids := slices.Compact(slices.Sorted(slices.Values(taskIDs)))
	rows, err := s.reader.Query(ctx, transitionListTasksQuery, ids)
	if err != nil {
		return nil, s.readErr(err, "list transitions of %d tasks", len(ids))
	}
	trs, err := collect(rows, scanTransition)
	if err != nil {
		return nil, s.readErr(err, "list transitions of %d tasks", len(ids))
	}
	return trs, nil
}
