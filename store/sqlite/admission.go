package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/state"
)

// admissionTx gives package admission the rows it decides on, inside the
// write transaction of the dispatch it allows. SQLite has one writer, so
// admissions are serialized without a lock.
type admissionTx struct{ tx *wtx }

const sqlAdmissionEntries = `SELECT e.owner, e.task_id, COALESCE(e.step_id, ''), e.attempt, e.priority, e.since, e.holding,
	COALESCE(t.state, ''), COALESCE(t.created_at, 0), COALESCE(s.state, ''), COALESCE(s.attempts, 0)
FROM admission_entries e
LEFT JOIN tasks t ON t.id = e.task_id
LEFT JOIN steps s ON s.id = e.step_id
WHERE e.key = ?`

func (a admissionTx) Entries(ctx context.Context, key string) ([]admission.Row, error) {
	rows, err := a.tx.QueryContext(ctx, sqlAdmissionEntries, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []admission.Row
	for rows.Next() {
		var (
			r                 admission.Row
			since, created    int64
			taskState, stepSt string
			holding           bool
		)
		if err := rows.Scan(&r.Owner, &r.TaskID, &r.StepID, &r.Attempt, &r.Priority, &since, &holding,
			&taskState, &created, &stepSt, &r.StepAttempts); err != nil {
			return nil, err
		}
		r.Since, r.Holding, r.TaskState, r.StepState = fromNanos(since), holding, state.State(taskState), state.State(stepSt)
		if created != 0 {
			r.TaskCreated = fromNanos(created)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const sqlPutAdmissionEntry = `INSERT INTO admission_entries (key, owner, task_id, step_id, attempt, priority, since, holding)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key, owner) DO UPDATE SET
	attempt = excluded.attempt, priority = excluded.priority, holding = excluded.holding,
	since = CASE WHEN ? THEN excluded.since ELSE admission_entries.since END`

func (a admissionTx) PutEntry(ctx context.Context, key string, e *admission.Row, reset bool) error {
	var step any
	if e.StepID != "" {
		step = e.StepID
	}
	_, err := a.tx.ExecContext(ctx, sqlPutAdmissionEntry, key, e.Owner, e.TaskID, step, e.Attempt, e.Priority,
		toNanos(e.Since), e.Holding, reset)
	return err
}

func (a admissionTx) DeleteEntries(ctx context.Context, key string, owners []string) error {
	for _, o := range owners {
		if _, err := a.tx.ExecContext(ctx, `DELETE FROM admission_entries WHERE key = ? AND owner = ?`, key, o); err != nil {
			return err
		}
	}
	return nil
}

func (a admissionTx) Limit(ctx context.Context, name string) (admission.Limit, bool, error) {
	var l admission.Limit
	var periodMS int64
	err := a.tx.QueryRowContext(ctx, `SELECT units, period_ms, burst FROM rate_limits WHERE name = ?`, name).
		Scan(&l.Units, &periodMS, &l.Burst)
	if errors.Is(err, sql.ErrNoRows) {
		return l, false, nil
	}
	l.Period = time.Duration(periodMS) * time.Millisecond
	return l, err == nil, err
}

func (a admissionTx) Bucket(ctx context.Context, limit, key string) (admission.Bucket, bool, error) {
	var b admission.Bucket
	var at int64
	err := a.tx.QueryRowContext(ctx, `SELECT tokens, at FROM rate_buckets WHERE limit_name = ? AND key = ?`, limit, key).
		Scan(&b.Tokens, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return b, false, nil
	}
	b.At = fromNanos(at)
	return b, err == nil, err
}

func (a admissionTx) PutBucket(ctx context.Context, limit, key string, b admission.Bucket) error {
	_, err := a.tx.ExecContext(ctx, `INSERT INTO rate_buckets (limit_name, key, tokens, at) VALUES (?, ?, ?, ?)
ON CONFLICT (limit_name, key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at`, limit, key, b.Tokens, toNanos(b.At))
	return err
}
