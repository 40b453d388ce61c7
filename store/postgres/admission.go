package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/state"
)

// admissionLock is the advisory lock that serializes admissions across
// coordinators: counting a key's holders and adding one must not
// interleave with another coordinator doing the same. It is held to the
// end of the batch's transaction, so a dispatch is committed before the
// next admission counts it. One lock for all keys cannot deadlock, and an
// admission costs a few round trips, so contention is brief.
const admissionLock = 0x7461736b6572 // "tasker"

// admissionTx gives package admission the rows it decides on, inside the
// write transaction of the dispatch it allows.
type admissionTx struct{ conn *pgx.Conn }

func (a admissionTx) lock(ctx context.Context) error {
	_, err := a.conn.Exec(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, int64(admissionLock))
	return err
}

const sqlAdmissionEntries = `SELECT e.owner, e.task_id, COALESCE(e.step_id, ''), e.attempt, e.priority, e.since, e.holding,
	COALESCE(t.state, ''), COALESCE(t.created_at, 0), COALESCE(s.state, ''), COALESCE(s.attempts, 0)
FROM admission_entries e
LEFT JOIN tasks t ON t.id = e.task_id
LEFT JOIN steps s ON s.id = e.step_id
WHERE e.key = $1::text`

func (a admissionTx) Entries(ctx context.Context, key string) ([]admission.Row, error) {
	rows, err := a.conn.Query(ctx, sqlAdmissionEntries, key)
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
			attempt, prio     int32
			stepAttempts      int32
		)
		if err := rows.Scan(&r.Owner, &r.TaskID, &r.StepID, &attempt, &prio, &since, &r.Holding,
			&taskState, &created, &stepSt, &stepAttempts); err != nil {
			return nil, err
		}
		r.Attempt, r.Priority, r.StepAttempts = int(attempt), int(prio), int(stepAttempts)
		r.Since, r.TaskState, r.StepState = fromNanos(since), state.State(taskState), state.State(stepSt)
		if created != 0 {
			r.TaskCreated = fromNanos(created)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const sqlPutAdmissionEntry = `INSERT INTO admission_entries (key, owner, task_id, step_id, attempt, priority, since, holding)
VALUES ($1::text, $2::text, $3::text, $4::text, $5::integer, $6::integer, $7::bigint, $8::boolean)
ON CONFLICT (key, owner) DO UPDATE SET
	attempt = excluded.attempt, priority = excluded.priority, holding = excluded.holding,
	since = CASE WHEN $9::boolean THEN excluded.since ELSE admission_entries.since END`

func (a admissionTx) PutEntry(ctx context.Context, key string, e *admission.Row, reset bool) error {
	var step *string
	if e.StepID != "" {
		step = &e.StepID
	}
	_, err := a.conn.Exec(ctx, sqlPutAdmissionEntry, key, e.Owner, e.TaskID, step, int32(e.Attempt), int32(e.Priority),
		toNanos(e.Since), e.Holding, reset)
	return err
}

func (a admissionTx) DeleteEntries(ctx context.Context, key string, owners []string) error {
	_, err := a.conn.Exec(ctx, `DELETE FROM admission_entries WHERE key = $1::text AND owner = ANY($2::text[])`, key, owners)
	return err
}

func (a admissionTx) Limit(ctx context.Context, name string) (admission.Limit, bool, error) {
	var l admission.Limit
	var periodMS int64
	err := a.conn.QueryRow(ctx, `SELECT units, period_ms, burst FROM rate_limits WHERE name = $1::text`, name).
		Scan(&l.Units, &periodMS, &l.Burst)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, false, nil
	}
	l.Period = time.Duration(periodMS) * time.Millisecond
	return l, err == nil, err
}

func (a admissionTx) Bucket(ctx context.Context, limit, key string) (admission.Bucket, bool, error) {
	var b admission.Bucket
	var at int64
	err := a.conn.QueryRow(ctx, `SELECT tokens, at FROM rate_buckets WHERE limit_name = $1::text AND key = $2::text`, limit, key).
		Scan(&b.Tokens, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return b, false, nil
	}
	b.At = fromNanos(at)
	return b, err == nil, err
}

func (a admissionTx) PutBucket(ctx context.Context, limit, key string, b admission.Bucket) error {
	_, err := a.conn.Exec(ctx, `INSERT INTO rate_buckets (limit_name, key, tokens, at) VALUES ($1::text, $2::text, $3::double precision, $4::bigint)
ON CONFLICT (limit_name, key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at`, limit, key, b.Tokens, toNanos(b.At))
	return err
}
