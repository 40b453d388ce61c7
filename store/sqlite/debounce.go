package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// sqlCloseDebounce closes the open debounced task of a template and key if
// it has started: it is no longer pending, or its start time is at or
// before the new create's time. Its WHERE repeats the partial index's.
const sqlCloseDebounce = `UPDATE tasks SET debounce_open = 0
	WHERE namespace = ?1 AND name = ?2 AND debounce_key = ?3 AND debounce_open
	AND (state <> '` + string(state.Pending) + `' OR run_at IS NULL OR run_at <= ?4)`

// closeDebounce runs before the insert of a debounced task, in its
// transaction, so the insert either takes the slot a started task left or
// finds the open task that has not started.
func closeDebounce(ctx context.Context, tx *wtx, t *store.Task) error {
	if _, err := tx.ExecContext(ctx, sqlCloseDebounce, t.Namespace, t.Name, t.DebounceKey, toNanos(t.CreatedAt)); err != nil {
		return fmt.Errorf("close started debounced task of %s/%s key %q: %w", t.Namespace, t.Name, t.DebounceKey, err)
	}
	return nil
}

// openDebounced reads the open debounced task of t's template and key, or
// ErrNotFound.
func openDebounced(ctx context.Context, tx *wtx, t *store.Task) (*store.Task, error) {
	var row taskRow
	err := tx.GetContext(ctx, &row, `SELECT `+taskColumns+` FROM tasks
		WHERE namespace = ? AND name = ? AND debounce_key = ? AND debounce_open`, t.Namespace, t.Name, t.DebounceKey)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("open debounced task of %s/%s key %q: %w", t.Namespace, t.Name, t.DebounceKey, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read open debounced task of %s/%s key %q: %w", t.Namespace, t.Name, t.DebounceKey, err)
	}
	return row.task()
}

// sqlDebounce replaces the context and start time of a debounced task that
// has not started; ?4 is the start time the caller saw, ?5 the caller's now.
const sqlDebounce = `UPDATE tasks SET context = ?2, run_at = ?3
	WHERE id = ?1 AND state = '` + string(state.Pending) + `' AND debounce_open AND run_at = ?4 AND run_at > ?5`

// TaskDebounce implements store.Store.
func (s *Store) TaskDebounce(ctx context.Context, params *store.TaskDebounceParams) error {
	if err := params.Validate(); err != nil {
		return err
	}
	return s.write(ctx, "TaskDebounce", func(ctx context.Context, tx *wtx) error {
		at := toNanos(params.At)
		if l := params.Lease; l != nil {
			var one int
			err := tx.QueryRowContext(ctx, sqlFence, params.TaskID, l.Token, at).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("task %s: lease %d of coordinator %s does not own it or is no longer live: %w",
					params.TaskID, l.Token, l.CoordinatorID, store.ErrLeaseLost)
			}
			if err != nil {
				return fmt.Errorf("task %s: check lease: %w", params.TaskID, err)
			}
		}
		taskContext := string(params.Context)
		if params.Context == nil {
			taskContext = "{}"
		}
		res, err := tx.ExecContext(ctx, sqlDebounce, params.TaskID, taskContext, toNanos(params.RunAt),
			toNanos(params.ExpectRunAt), at)
		if err != nil {
			return fmt.Errorf("debounce task %s: %w", params.TaskID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("debounce task %s: %w", params.TaskID, err)
		}
		if n == 1 {
			return nil
		}
		return debounceRefusal(ctx, tx, params)
	})
}

// debounceRefusal says why a debounce update matched no row.
func debounceRefusal(ctx context.Context, tx *wtx, p *store.TaskDebounceParams) error {
	var cur struct {
		State string        `db:"state"`
		Open  bool          `db:"debounce_open"`
		RunAt sql.NullInt64 `db:"run_at"`
	}
	err := tx.GetContext(ctx, &cur, `SELECT state, debounce_open, run_at FROM tasks WHERE id = ?`, p.TaskID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("debounce task %s: %w", p.TaskID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("debounce task %s: read its state: %w", p.TaskID, err)
	case cur.State != string(state.Pending):
		return fmt.Errorf("debounce task %s: task is %s, no longer pending: it started: %w", p.TaskID, cur.State, store.ErrConflict)
	case !cur.Open:
		return fmt.Errorf("debounce task %s: task is no longer open to debounced creates: %w", p.TaskID, store.ErrConflict)
	case !cur.RunAt.Valid || cur.RunAt.Int64 != toNanos(p.ExpectRunAt):
		return fmt.Errorf("debounce task %s: its start time is %s, not %s: %w", p.TaskID,
			fromNullNanos(cur.RunAt), p.ExpectRunAt, store.ErrConflict)
	}
	return fmt.Errorf("debounce task %s: its start time %s is not after %s: it started: %w", p.TaskID,
		fromNullNanos(cur.RunAt), p.At, store.ErrConflict)
}
