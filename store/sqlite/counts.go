package sqlite

import (
	"context"
	"fmt"

	"github.com/tasker-go/tasker/store"
)

// TaskCount implements store.Store. Namespace and name are answered from a
// covering index whose entries are grouped by state (tasks_state_id
// unfiltered, tasks_namespace_name_state with a namespace or name), so it
// reads one index entry per counted task and never a task row; the other
// filters read the rows they keep, as a list does.
func (s *Store) TaskCount(ctx context.Context, params *store.TaskCountParams) ([]store.StateCount, error) {
	if params == nil {
		params = &store.TaskCountParams{}
	}
	if s.isClosed() {
		return nil, fmt.Errorf("count tasks: %w", store.ErrClosed)
	}
	if err := checkContextMatches(params.Context); err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	query, args := taskCountQuery(params)
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.readErr(err, "count tasks")
	}
	defer func() { _ = rows.Close() }()
	counts := map[string]int64{}
	for rows.Next() {
		var (
			st string
			n  int64
		)
		if err := rows.Scan(&st, &n); err != nil {
			return nil, s.readErr(err, "count tasks")
		}
		counts[st] += n
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(err, "count tasks")
	}
	return store.StateCounts(counts)
}

// taskCountQuery is TaskCount's statement. Each groups by the index's
// columns up to state, in index order, so the index's own order forms the
// groups and nothing is sorted; the driver adds the groups of one state
// up (one row per template and state). A name without a namespace is
// served by tasks_namespace_name_state scanned whole, its groups formed in
// a temporary tree: the index holds one small entry per task, where the
// table holds the contexts.
//
// A filter no such index holds (ReadsRows) counts the rows TaskList would
// list, through the same WHERE.
func taskCountQuery(p *store.TaskCountParams) (string, []any) {
	switch {
	case p.ReadsRows():
		where, args := taskWhere(p.List())
		// GROUP BY +state: grouping by the bare column, the planner walks
		// all of tasks_state_id for its order (it holds state and id, so it
		// looks covering) rather than the primary key's range of ids (NOT
		// INDEXED does not stop it on a WITHOUT ROWID table). The unary
		// plus hides that order; the groups, six at most, go in a
		// temporary tree.
		return `SELECT state, count(*) FROM tasks` + where + ` GROUP BY +state`, args
	case p.Namespace != "" && p.Name != "":
		return `SELECT state, count(*) FROM tasks INDEXED BY tasks_namespace_name_state
			WHERE namespace = ? AND name = ? GROUP BY state`, []any{p.Namespace, p.Name}
	case p.Namespace != "":
		return `SELECT state, count(*) FROM tasks INDEXED BY tasks_namespace_name_state
			WHERE namespace = ? GROUP BY name, state`, []any{p.Namespace}
	case p.Name != "":
		return `SELECT state, count(*) FROM tasks INDEXED BY tasks_namespace_name_state
			WHERE name = ? GROUP BY state`, []any{p.Name}
	default:
		return `SELECT state, count(*) FROM tasks INDEXED BY tasks_state_id GROUP BY state`, nil
	}
}
