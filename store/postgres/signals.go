package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/store"
)

const (
	stmtSignalCreate  = "tasker_signal_create"
	stmtSignalConsume = "tasker_signal_consume"
)

const signalColumns = `id, task_id, name, payload, received_at, consumed_step, consumed_attempt, consumed_at`

// signalCreateSQL stores a signal not yet consumed, or refuses (TK404 for
// an unknown task, TK409 for an id stored already) through
// tasker_signal_refused.
const signalCreateSQL = `WITH inserted AS (
	INSERT INTO signals (id, task_id, name, payload, received_at)
	SELECT $1::text, $2::text, $3::text, $4::text, $5::bigint
	WHERE EXISTS (SELECT 1 FROM tasks WHERE id = $2::text)
	ON CONFLICT (id) DO NOTHING
	RETURNING id
)
SELECT id FROM inserted
UNION ALL
SELECT tasker_signal_refused($1::text, $2::text) WHERE NOT EXISTS (SELECT 1 FROM inserted)`

// signalConsumeSQL records a step attempt's consumption of a signal: the
// stored one if it is not consumed yet, or the signal itself, stored
// consumed; otherwise tasker_signal_refused raises TK409.
const signalConsumeSQL = `WITH consumed AS (
	INSERT INTO signals (` + signalColumns + `)
	VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint, $6::text, $7::integer, $8::bigint)
	ON CONFLICT (id) DO UPDATE SET consumed_step = EXCLUDED.consumed_step,
		consumed_attempt = EXCLUDED.consumed_attempt, consumed_at = EXCLUDED.consumed_at
	WHERE signals.consumed_step IS NULL AND signals.task_id = EXCLUDED.task_id
	RETURNING id
)
SELECT id FROM consumed
UNION ALL
SELECT tasker_signal_refused($1::text, $2::text) WHERE NOT EXISTS (SELECT 1 FROM consumed)`

// SignalCreate implements store.Store: the fence (when a lease is given)
// and the insert, one request.
func (s *Store) SignalCreate(ctx context.Context, params *store.SignalCreateParams) error {
	if err := params.Validate(); err != nil {
		return err
	}
	sig := params.Signal
	at := params.At
	if at.IsZero() {
		at = sig.ReceivedAt
	}
	describe := fmt.Sprintf("signal %s (%s) of task %s", sig.Name, sig.ID, sig.TaskID)
	return s.write(ctx, "SignalCreate", func(p *pipe) {
		if l := params.Lease; l != nil {
			fence := fmt.Sprintf("task %s: lease %d of coordinator %s", sig.TaskID, l.Token, l.CoordinatorID)
			p.query(stmtFence, []any{sig.TaskID, l.Token, toNanos(at)}, func(pgx.Rows) error { return nil }, func(err *pgconn.PgError) error {
				return explainRefusal(fence, err)
			})
		}
		p.query(stmtSignalCreate, []any{sig.ID, sig.TaskID, sig.Name, toNullJSON(sig.Payload), toNanos(sig.ReceivedAt)},
			func(pgx.Rows) error { return nil }, func(err *pgconn.PgError) error {
				return explainRefusal(describe, err)
			})
	})
}

// queueConsume queues a step change's consumption of its signal.
func queueConsume(p *pipe, taskID string, at int64, c *store.StepChange) {
	sig := c.Signal
	describe := fmt.Sprintf("step %s (%s) of task %s: consume signal %s (%s)", c.StepName, c.StepID, taskID, sig.Name, sig.ID)
	p.query(stmtSignalConsume, []any{sig.ID, taskID, sig.Name, toNullJSON(sig.Payload), toNanos(sig.ReceivedAt), c.StepID, int32(c.Attempts), at},
		func(pgx.Rows) error { return nil }, func(err *pgconn.PgError) error {
			return explainRefusal(describe, err)
		})
}

// SignalList implements store.Store.
func (s *Store) SignalList(ctx context.Context, params *store.SignalListParams) ([]*store.Signal, error) {
	q := `SELECT ` + signalColumns + ` FROM signals WHERE task_id = $1`
	if params.Pending {
		q += ` AND consumed_step IS NULL`
	}
	rows, err := s.reader.Query(ctx, q+` ORDER BY received_at, id`, params.TaskID)
	if err != nil {
		return nil, s.readErr(err, "list signals of task %s", params.TaskID)
	}
	defer rows.Close()
	var out []*store.Signal
	for rows.Next() {
		var (
			sig           store.Signal
			payload, step *string
			attempt       *int32
			receivedAt    int64
			consumedAt    *int64
		)
		if err := rows.Scan(&sig.ID, &sig.TaskID, &sig.Name, &payload, &receivedAt, &step, &attempt, &consumedAt); err != nil {
			return nil, s.readErr(err, "list signals of task %s", params.TaskID)
		}
		sig.Payload, sig.ReceivedAt, sig.ConsumedStepID, sig.ConsumedAt = fromNullJSON(payload), fromNanos(receivedAt), fromNullString(step), fromNullNanos(consumedAt)
		if attempt != nil {
			sig.ConsumedAttempt = int(*attempt)
		}
		out = append(out, &sig)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(err, "list signals of task %s", params.TaskID)
	}
	return out, nil
}
