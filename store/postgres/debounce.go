package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

const (
	stmtCreateDebounced = "tasker_create_debounced"
	stmtCloseDebounce   = "tasker_close_debounce"
	stmtDebounce        = "tasker_debounce"
)

// createDebouncedSQL is createTaskSQL for a task with a debounce key: when
// the insert finds the key's slot taken, it returns the open task of the
// template and key instead of one with the same identity key.
const createDebouncedSQL = createTaskCTE + `WHERE namespace = $2::text AND name = $3::text
	AND debounce_key = $41::text AND debounce_open AND NOT EXISTS (SELECT 1 FROM task)`

// closeDebounceSQL goes before createDebouncedSQL in one request: it closes
// the open debounced task of the template and key if it has started (no
// longer pending, or its start time at or before the new create's time), so
// the insert takes its slot. Its row lock orders it with a concurrent
// debounceSQL on the same task: whichever commits first, the other
// re-checks its WHERE against the result.
const closeDebounceSQL = `UPDATE tasks SET debounce_open = false
	WHERE namespace = $1::text AND name = $2::text AND debounce_key = $3::text AND debounce_open
	AND (state <> '` + string(state.Pending) + `' OR run_at IS NULL OR run_at <= $4::bigint)`

// debounceSQL replaces the context and start time of a debounced task that
// has not started; if it matches no row, tasker_debounce_refused raises
// TK409 (or TK404), which stops the pipeline at this request.
const debounceSQL = `WITH changed AS (
	UPDATE tasks SET context = $2::text, run_at = $3::bigint
	WHERE id = $1::text AND state = '` + string(state.Pending) + `' AND debounce_open
		AND run_at = $4::bigint AND run_at > $5::bigint
	RETURNING id
)
SELECT 1::bigint FROM changed
UNION ALL
SELECT tasker_debounce_refused($1::text, $4::bigint, $5::bigint)
WHERE NOT EXISTS (SELECT 1 FROM changed)`

func queueCloseDebounce(p *pipe, t *store.Task) {
	p.exec(stmtCloseDebounce, t.Namespace, t.Name, t.DebounceKey, toNanos(t.CreatedAt))
}

// openDebounced reads the open debounced task of t's template and key. If
// there is none (it was closed after the create that found it), the create
// is refused with ErrConflict: asked again, it stores a task or finds one.
func (s *Store) openDebounced(ctx context.Context, t *store.Task) (*store.Task, bool, error) {
	task, err := scanTask(s.reader.QueryRow(ctx, `SELECT `+taskColumns+` FROM tasks
		WHERE namespace = $1 AND name = $2 AND debounce_key = $3 AND debounce_open`, t.Namespace, t.Name, t.DebounceKey))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, fmt.Errorf("TaskCreate: task %s: the open debounced task of %s/%s key %q was closed meanwhile: %w",
			t.ID, t.Namespace, t.Name, t.DebounceKey, store.ErrConflict)
	}
	if err != nil {
		return nil, false, fmt.Errorf("TaskCreate: read open debounced task of %s/%s key %q: %w", t.Namespace, t.Name, t.DebounceKey, classify(err))
	}
	return task, false, nil
}

// TaskDebounce implements store.Store: the fence (when a lease is given)
// and the conditional update, one request.
func (s *Store) TaskDebounce(ctx context.Context, params *store.TaskDebounceParams) error {
	if err := params.Validate(); err != nil {
		return err
	}
	at := toNanos(params.At)
	taskContext := string(params.Context)
	if params.Context == nil {
		taskContext = "{}"
	}
	id := params.TaskID
	return s.write(ctx, "TaskDebounce", func(p *pipe) {
		if l := params.Lease; l != nil {
			describe := fmt.Sprintf("task %s: lease %d of coordinator %s", id, l.Token, l.CoordinatorID)
			p.query(stmtFence, []any{id, l.Token, at}, func(pgx.Rows) error { return nil }, func(err *pgconn.PgError) error {
				return explainRefusal(describe, err)
			})
		}
		p.query(stmtDebounce, []any{id, taskContext, toNanos(params.RunAt), toNanos(params.ExpectRunAt), at},
			func(pgx.Rows) error { return nil }, func(err *pgconn.PgError) error {
				return explainRefusal("debounce task "+id, err)
			})
	})
}
