package sqlite

import (
	"context"
	"fmt"

	"github.com/tasker-go/tasker/store"
)

// TaskCount implements store.Store. Every filter is answered from a
// covering index whose entries are grouped by state (tasks_state_id
// unfiltered, tasks_namespace_name_state with a namespace or name), so it
// reads one index entry per counted task and never a task row.
func (s *Store) TaskCount(ctx context.Context, params *store.TaskCountParams) ([]store.StateCount, error) {
	if params == nil {
		params = &store.TaskCountParams{}
	}
	if s.isClosed() {
		return nil, fmt.Errorf("count tasks: %w", store.ErrClosed)
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
func taskCountQuery(p *store.TaskCountParams) (string, []any) {
	switch {
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
