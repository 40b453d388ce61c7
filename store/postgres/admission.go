package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
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

// admissionChannel is the notification channel of one schema's
// coordinators, so tests (and tenants) in other schemas of the same
// database do not hear each other.
func admissionChannel(schema string) string {
	if schema == "" {
		return "tasker_admission"
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("tasker_admission_%x", h.Sum64())
}

// AdmissionNotify implements store.AdmissionNotifier with NOTIFY: the
// payload is the sender, then the keys, one per line (a notification
// carries under 8000 bytes, so long lists go in several).
func (s *Store) AdmissionNotify(ctx context.Context, from string, keys []string) error {
	for len(keys) > 0 {
		payload, n := from, 0
		for n < len(keys) && len(payload)+1+len(keys[n]) < 7000 {
			payload += "\n" + keys[n]
			n++
		}
		if n == 0 {
			n = 1 // a key too long to share a notification is skipped; the waiters' recheck finds it free
		} else if _, err := s.reader.Exec(ctx, `SELECT pg_notify($1::text, $2::text)`, s.channel, payload); err != nil {
			return s.readErr(err, "notify %d concurrency keys", n)
		}
		keys = keys[n:]
	}
	return nil
}

// AdmissionListen implements store.AdmissionNotifier with LISTEN on a
// connection of its own, reconnecting after a failure.
func (s *Store) AdmissionListen(ctx context.Context, self string, fn func(keys []string)) error {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, self, fn)
		if ctx.Err() != nil {
			break
		}
		s.logger.Warn("admission notifications interrupted; reconnecting", "err", err, "after", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
	return ctx.Err()
}

func (s *Store) listenOnce(ctx context.Context, self string, fn func(keys []string)) error {
	conn, err := pgx.ConnectConfig(ctx, s.listen)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	fn(nil) // anything sent while not listening was lost
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		from, rest, _ := strings.Cut(n.Payload, "\n")
		if from == self || rest == "" {
			continue
		}
		fn(strings.Split(rest, "\n"))
	}
}
