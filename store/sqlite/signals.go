package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/store"
)

const signalColumns = `id, task_id, name, payload, received_at, consumed_step, consumed_attempt, consumed_at`

type signalRow struct {
	ID              string         `db:"id"`
	TaskID          string         `db:"task_id"`
	Name            string         `db:"name"`
	Payload         sql.NullString `db:"payload"`
	ReceivedAt      int64          `db:"received_at"`
	ConsumedStep    sql.NullString `db:"consumed_step"`
	ConsumedAttempt sql.NullInt64  `db:"consumed_attempt"`
	ConsumedAt      sql.NullInt64  `db:"consumed_at"`
}

func (r *signalRow) signal() *store.Signal {
	return &store.Signal{
		ID: r.ID, TaskID: r.TaskID, Name: r.Name, Payload: fromNullJSON(r.Payload),
		ReceivedAt: fromNanos(r.ReceivedAt), ConsumedStepID: r.ConsumedStep.String,
		ConsumedAttempt: int(r.ConsumedAttempt.Int64), ConsumedAt: fromNullNanos(r.ConsumedAt),
	}
}

// SignalCreate implements store.Store.
func (s *Store) SignalCreate(ctx context.Context, params *store.SignalCreateParams) error {
	if err := params.Validate(); err != nil {
		return err
	}
	sig := params.Signal
	at := params.At
	if at.IsZero() {
		at = sig.ReceivedAt
	}
	return s.write(ctx, "SignalCreate", func(ctx context.Context, tx *wtx) error {
		if l := params.Lease; l != nil {
			var one int
			err := tx.QueryRowContext(ctx, sqlFence, sig.TaskID, l.Token, toNanos(at)).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				if err := taskExists(ctx, tx, sig.TaskID); err != nil {
					return err
				}
				return fmt.Errorf("task %s: lease %d of coordinator %s does not own it or is no longer live: %w",
					sig.TaskID, l.Token, l.CoordinatorID, store.ErrLeaseLost)
			}
			if err != nil {
				return fmt.Errorf("task %s: check lease: %w", sig.TaskID, err)
			}
		} else if err := taskExists(ctx, tx, sig.TaskID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO signals (`+signalColumns+`)
			VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL) ON CONFLICT (id) DO NOTHING`,
			sig.ID, sig.TaskID, sig.Name, toNullJSON(sig.Payload), toNanos(sig.ReceivedAt))
		if err != nil {
			return fmt.Errorf("store signal %s of task %s: %w", sig.Name, sig.TaskID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store signal %s of task %s: %w", sig.Name, sig.TaskID, err)
		} else if n == 0 {
			return fmt.Errorf("signal %s: id stored already: %w", sig.ID, store.ErrConflict)
		}
		return nil
	})
}

// consumeSignal records c's consumption of its signal in a TaskAdvance:
// the stored signal, if not consumed yet, or the signal itself, stored
// consumed.
func consumeSignal(ctx context.Context, tx *wtx, taskID string, at int64, c *store.StepChange) error {
	sig := c.Signal
	res, err := tx.ExecContext(ctx, `INSERT INTO signals (`+signalColumns+`)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
		ON CONFLICT (id) DO UPDATE SET consumed_step = ?6, consumed_attempt = ?7, consumed_at = ?8
		WHERE signals.consumed_step IS NULL AND signals.task_id = ?2`,
		sig.ID, taskID, sig.Name, toNullJSON(sig.Payload), toNanos(sig.ReceivedAt), c.StepID, c.Attempts, at)
	if err != nil {
		return fmt.Errorf("step %s of task %s: consume signal %s: %w", c.StepID, taskID, sig.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("step %s of task %s: consume signal %s: %w", c.StepID, taskID, sig.ID, err)
	} else if n == 0 {
		return fmt.Errorf("step %s of task %s: signal %s (%s) is consumed already: %w", c.StepID, taskID, sig.ID, sig.Name, store.ErrConflict)
	}
	return nil
}

// SignalList implements store.Store.
func (s *Store) SignalList(ctx context.Context, params *store.SignalListParams) ([]*store.Signal, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("SignalList: %w", store.ErrClosed)
	}
	q := `SELECT ` + signalColumns + ` FROM signals WHERE task_id = ?`
	if params.Pending {
		q += ` AND consumed_step IS NULL`
	}
	var rows []signalRow
	if err := s.reader.SelectContext(ctx, &rows, q+` ORDER BY received_at, id`, params.TaskID); err != nil {
		return nil, s.readErr(err, "list signals of task %s", params.TaskID)
	}
	out := make([]*store.Signal, len(rows))
	for i := range rows {
		out[i] = rows[i].signal()
	}
	return out, nil
}
