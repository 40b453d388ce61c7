package postgres

import (
	"context"
	"fmt"

	"github.com/tasker-go/tasker/store"
)

// TaskCount implements store.Store. Namespace and name are answered by an
// index-only scan of an index that holds the state (tasks_state_id
// unfiltered, tasks_namespace_name_state with a namespace or name), so it
// reads one index entry per counted task and, once the table is vacuumed,
// no task row; the other filters read the rows they keep, as a list does.
func (s *Store) TaskCount(ctx context.Context, params *store.TaskCountParams) ([]store.StateCount, error) {
	if params == nil {
		params = &store.TaskCountParams{}
	}
	if s.isClosed() {
		return nil, fmt.Errorf("count tasks: %w", store.ErrClosed)
	}
	if err := store.CheckContextMatches(params.Context); err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	query, args := taskCountQuery(params)
	rows, err := s.reader.Query(ctx, query, args...)
	if err != nil {
		return nil, s.readErr(err, "count tasks")
	}
	defer rows.Close()
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
// columns up to state, so the index's order forms the groups; the driver
// adds the groups of one state up (one row per template and state).
//
// A filter no such index holds (ReadsRows) counts the rows TaskList would
// list, through the same WHERE.
func taskCountQuery(p *store.TaskCountParams) (string, []any) {
	switch {
	case p.ReadsRows():
		where, args := taskWhere(p.List())
		return `SELECT state, count(*) FROM tasks` + where + ` GROUP BY state`, args
	case p.Namespace != "" && p.Name != "":
		return `SELECT state, count(*) FROM tasks WHERE namespace = $1 AND name = $2 GROUP BY state`, []any{p.Namespace, p.Name}
	case p.Namespace != "":
		return `SELECT state, count(*) FROM tasks WHERE namespace = $1 GROUP BY name, state`, []any{p.Namespace}
	case p.Name != "":
		return `SELECT state, count(*) FROM tasks WHERE name = $1 GROUP BY namespace, state`, []any{p.Name}
	default:
		return `SELECT state, count(*) FROM tasks GROUP BY state`, nil
	}
}
