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
	// fence is the lease token the request's first write must still check
	// ownership against, in its own WHERE (see sqlUpdateStepNamed); 0 once
	// checked, or with no lease. The check is left to the first write only
	// when nothing comes before that write: no admission (whose refusals
	// the caller reads, and whose tokens the batch caches) and no new
	// steps. Otherwise it is a read of its own, first, as ever.
	var fence int64
	if l := p.Lease; l != nil {
		token = l.Token
		first := p.Task != nil
		if len(p.Steps) > 0 {
			first = p.Steps[0].Admit == nil
		}
		if first && p.Admit == nil && len(p.NewSteps) == 0 {
			fence = l.Token
		} else if err := checkFence(ctx, tx, p.TaskID, l, at); err != nil {
			return nil, err
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

	if len(p.NewSteps) > 0 {
		rows := make([]*store.Step, len(p.NewSteps))
		for i, st := range p.NewSteps {
			row := *st
			row.UpdatedAt = fromNanos(at)
			rows[i] = &row
		}
		if err := insertSteps(ctx, tx, p.TaskID, rows); err != nil {
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
		name, err := updateStep(ctx, tx, p.TaskID, at, c, p.Lease, fence)
		if err != nil {
			return nil, err
		}
		fence = 0
		if c.Signal != nil {
			if err := consumeSignal(ctx, tx, p.TaskID, at, c); err != nil {
				return nil, err
			}
		}
		tr := c.Transition(p.TaskID, fromNanos(at), token)
		tr.StepName = name
		insertTransition(tx, p.TaskID, tr)
		out = append(out, tr)
	}
	if p.Release {
		// Deleted with the batch's other releases, before it commits; until
		// then the task still counts as holding, which is only cautious.
		tx.released = append(tx.released, p.TaskID)
	}
	if c := p.Task; c != nil {
		r := tx.raw
		r.reset(5)
		r.add(string(c.To), at, p.TaskID, string(c.From), fence)
		res, err := r.exec(ctx, sqlUpdateTask)
		if err != nil {
			return nil, fmt.Errorf("task %s %s→%s: %w", p.TaskID, c.From, c.To, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("task %s %s→%s: %w", p.TaskID, c.From, c.To, err)
		} else if n == 0 {
			if fence != 0 {
				if err := checkFence(ctx, tx, p.TaskID, p.Lease, at); err != nil {
					return nil, err
				}
			}
			return nil, taskMismatch(ctx, tx, p.TaskID, c)
		}
		tr := c.Transition(p.TaskID, fromNanos(at), token)
		insertTransition(tx, p.TaskID, tr)
		out = append(out, tr)
	} else if len(p.Steps) == 0 {
		// Nothing to change, but an unknown task is still an error.
		if err := taskExists(ctx, tx, p.TaskID); err != nil {
			return nil, err
		}
	}

	return out, nil
}

// checkFence returns ErrLeaseLost unless the task is owned by lease l and
// l is live at at.
func checkFence(ctx context.Context, tx *wtx, taskID string, l *store.Lease, at int64) error {
	var one int
	err := tx.QueryRowContext(ctx, sqlFence, taskID, l.Token, at).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("task %s: lease %d of coordinator %s does not own it or is no longer live: %w",
			taskID, l.Token, l.CoordinatorID, store.ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("task %s: check lease: %w", taskID, err)
	}
	return nil
}

// updateStep applies one step change if the step is still in c.From with
// c.ExpectAttempts attempts, and returns the step's stored name (the
// transition records it even if the caller left StepName empty). With
// fence not 0 it also checks that lease owns the task, as checkFence does.
func updateStep(ctx context.Context, tx *wtx, taskID string, at int64, c *store.StepChange, lease *store.Lease, fence int64) (string, error) {
	var results, errMsg, errClass any
	var errRetryable any
	if c.Results != nil {
		results = string(c.Results)
	}
	if c.Error != nil {
		errMsg, errClass, errRetryable = c.Error.Message, c.Error.Class, c.Error.Retryable
	}
	if c.StepName != "" {
		r := tx.raw
		r.reset(17)
		r.add(string(c.To), int64(c.Attempts), nullNanos(c.NextRetryAt), at, int64(c.MaxAttempts), results,
			c.Error != nil, errMsg, errClass, errRetryable, c.StepID, taskID, string(c.From),
			int64(c.ExpectAttempts), c.Rerun, c.StepName, fence)
		res, err := r.exec(ctx, sqlUpdateStepNamed)
		if err != nil {
			return "", fmt.Errorf("step %s (%s) of task %s %s→%s: %w", c.StepName, c.StepID, taskID, c.From, c.To, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return "", fmt.Errorf("step %s (%s) of task %s %s→%s: %w", c.StepName, c.StepID, taskID, c.From, c.To, err)
		} else if n == 1 {
			return c.StepName, nil
		}
		// No row: the lease, the step's state or attempts, or only its
		// name (the caller's may differ from the stored one, which the
		// general statement then records) did not match.
	}
	if fence != 0 {
		if err := checkFence(ctx, tx, taskID, lease, at); err != nil {
			return "", err
		}
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
