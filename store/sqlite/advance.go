package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/store"
)

// TaskAdvance implements store.Store. Step changes are applied and recorded
// in order, then the task change, if any: a task's transition follows from
// its steps'. Every
// UPDATE carries its precondition in the WHERE clause, so a stale caller
// matches no row and the whole request is rolled back to its savepoint. The
// task's UpdatedAt moves only with a task change, so step progress never
// rewrites the task row.
func (s *Store) TaskAdvance(ctx context.Context, params *store.TaskAdvanceParams) ([]*store.Transition, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	var out []*store.Transition
	err := s.write(ctx, "TaskAdvance", func(ctx context.Context, tx *wtx) error {
		var err error
		out, err = advanceTask(ctx, tx, params)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func advanceTask(ctx context.Context, tx *wtx, p *store.TaskAdvanceParams) ([]*store.Transition, error) {
	at := toNanos(p.At)
	var token int64
	if l := p.Lease; l != nil {
		token = l.Token
		var one int
		err := tx.QueryRowContext(ctx, sqlFence, p.TaskID, l.Token, at).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("task %s: lease %d of coordinator %s does not own it or is no longer live: %w",
				p.TaskID, l.Token, l.CoordinatorID, store.ErrLeaseLost)
		}
		if err != nil {
			return nil, fmt.Errorf("task %s: check lease: %w", p.TaskID, err)
		}
	}
	out := make([]*store.Transition, 0, len(p.Steps)+1)
	p.Refused = nil
	admit := func(r *admission.Request, stepID string) (bool, error) {
		v, err := admission.Admit(ctx, admissionTx{tx}, r, fromNanos(at), p.Aging)
		if err != nil {
			return false, fmt.Errorf("task %s: %w", p.TaskID, err)
		}
		if !v.Admitted {
			p.Refused = append(p.Refused, store.Refusal{StepID: stepID, Verdict: *v})
		}
		return v.Admitted, nil
	}
	if p.Admit != nil {
		if ok, err := admit(p.Admit, ""); !ok || err != nil {
			return nil, err
		}
	}

	for _, st := range p.NewSteps {
		row := *st
		row.UpdatedAt = fromNanos(at)
		if err := insertStep(ctx, tx, p.TaskID, &row); err != nil {
			return nil, err
		}
	}
	for _, c := range p.Steps {
		if c.Admit != nil {
			if ok, err := admit(c.Admit, c.StepID); err != nil {
				return nil, err
			} else if !ok {
				continue
			}
		}
		name, err := updateStep(ctx, tx, p.TaskID, at, c)
		if err != nil {
			return nil, err
		}
		if c.Signal != nil {
			if err := consumeSignal(ctx, tx, p.TaskID, at, c); err != nil {
				return nil, err
			}
		}
		tr := c.Transition(p.TaskID, fromNanos(at), token)
		tr.StepName = name
		if tr.Seq, err = insertTransition(ctx, tx, p.TaskID, tr); err != nil {
			return nil, err
		}
		out = append(out, tr)
	}
	if p.Release {
		// Deleted with the batch's other releases, before it commits; until
		// then the task still counts as holding, which is only cautious.
		tx.released = append(tx.released, p.TaskID)
	}
	if c := p.Task; c != nil {
		res, err := tx.ExecContext(ctx, sqlUpdateTask, string(c.To), at, p.TaskID, string(c.From))
		if err != nil {
			return nil, fmt.Errorf("task %s %s→%s: %w", p.TaskID, c.From, c.To, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("task %s %s→%s: %w", p.TaskID, c.From, c.To, err)
		} else if n == 0 {
			return nil, taskMismatch(ctx, tx, p.TaskID, c)
		}
		tr := c.Transition(p.TaskID, fromNanos(at), token)
		if tr.Seq, err = insertTransition(ctx, tx, p.TaskID, tr); err != nil {
			return nil, err
		}
		out = append(out, tr)
	} else if len(p.Steps) == 0 {
		// Nothing to change, but an unknown task is still an error.
		if err := taskExists(ctx, tx, p.TaskID); err != nil {
			return nil, err
		}
	}

	return out, nil
}

// updateStep applies one step change if the step is still in c.From with
// c.ExpectAttempts attempts, and returns the step's stored name (the
// transition records it even if the caller left StepName empty).
func updateStep(ctx context.Context, tx *wtx, taskID string, at int64, c *store.StepChange) (string, error) {
	var results, errMsg, errClass any
	var errRetryable any
	if c.Results != nil {
		results = string(c.Results)
	}
	if c.Error != nil {
		errMsg, errClass, errRetryable = c.Error.Message, c.Error.Class, c.Error.Retryable
	}
	var name string
	err := tx.QueryRowContext(ctx, sqlUpdateStep,
		string(c.To), c.Attempts, toNullNanos(c.NextRetryAt), at,
		c.MaxAttempts, results, c.Error != nil, errMsg, errClass, errRetryable,
		c.StepID, taskID, string(c.From), c.ExpectAttempts, c.Rerun,
	).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", stepMismatch(ctx, tx, taskID, c)
	}
	if err != nil {
		return "", fmt.Errorf("step %s (%s) of task %s %s→%s: %w", c.StepName, c.StepID, taskID, c.From, c.To, err)
	}
	return name, nil
}

// taskMismatch explains why a task change matched no row.
func taskMismatch(ctx context.Context, tx *wtx, taskID string, c *store.TaskChange) error {
	var current string
	err := tx.GetContext(ctx, &current, `SELECT state FROM tasks WHERE id = ?`, taskID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("task %s %s→%s: read current state: %w", taskID, c.From, c.To, err)
	}
	return fmt.Errorf("task %s %s→%s: task is %s, not %s: %w", taskID, c.From, c.To, current, c.From, store.ErrConflict)
}

// stepMismatch explains why a step change matched no row.
func stepMismatch(ctx context.Context, tx *wtx, taskID string, c *store.StepChange) error {
	var current struct {
		Name     string `db:"name"`
		State    string `db:"state"`
		Attempts int    `db:"attempts"`
	}
	err := tx.GetContext(ctx, &current, `SELECT name, state, attempts FROM steps WHERE id = ? AND task_id = ?`,
		c.StepID, taskID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("step %s (%s) of task %s: %w", c.StepName, c.StepID, taskID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("step %s (%s) of task %s: read current state: %w", c.StepName, c.StepID, taskID, err)
	}
	return fmt.Errorf("step %s (%s) of task %s %s→%s: expected %s with %d attempts, found %s with %d: %w",
		current.Name, c.StepID, taskID, c.From, c.To, c.From, c.ExpectAttempts, current.State, current.Attempts,
		store.ErrConflict)
}

func taskExists(ctx context.Context, tx *wtx, taskID string) error {
	var one int
	err := tx.GetContext(ctx, &one, `SELECT 1 FROM tasks WHERE id = ?`, taskID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("task %s: %w", taskID, err)
	}
	return nil
}
