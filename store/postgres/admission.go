package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
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

// admissionRows selects an entry joined with its task and step, the
// columns scanEntries reads.
const admissionRows = `SELECT e.owner, e.task_id, COALESCE(e.step_id, ''), e.attempt, e.priority, e.since, e.holding,
	COALESCE(t.state, ''), COALESCE(t.created_at, 0), COALESCE(s.state, ''), COALESCE(s.attempts, 0)
FROM admission_entries e
LEFT JOIN tasks t ON t.id = e.task_id
LEFT JOIN steps s ON s.id = e.step_id
`

const sqlAdmissionEntries = admissionRows + `WHERE e.key = $1::text`

func (a admissionTx) Entries(ctx context.Context, key string) ([]admission.Row, error) {
	return a.scanEntries(ctx, sqlAdmissionEntries, key)
}

// admissionHolds is Classify's Holding, in SQL over sqlAdmissionEntries'
// joins (NULL, for a missing task or step, is not holding).
const admissionHolds = `COALESCE((e.step_id IS NULL AND (t.state = 'in_progress' OR (t.state = 'pending' AND e.holding)))
	OR (e.step_id IS NOT NULL AND e.holding AND (
		(s.state = 'in_progress' AND s.attempts = e.attempt)
		OR (s.state IN ('pending', 'error') AND s.attempts = e.attempt - 1 AND t.state IN ('pending', 'in_progress')))), false)`

const (
	sqlAdmissionHolders = `SELECT count(*) FROM admission_entries e
LEFT JOIN tasks t ON t.id = e.task_id
LEFT JOIN steps s ON s.id = e.step_id
WHERE e.key = $1::text AND e.owner <> $2::text AND ` + admissionHolds
	sqlAdmissionLine = admissionRows + `WHERE e.key = $1::text AND (e.owner = $2::text OR NOT ` + admissionHolds + `)`
)

func (a admissionTx) Line(ctx context.Context, key, owner string, taskLevel bool) ([]admission.Row, int, error) {
	var holders int64
	if taskLevel {
		// Released when their task ends, a key's task entries hold exactly
		// when flagged: count them without joins, and read rows only if
		// any others wait (or this one has an entry).
		var others int64
		if err := a.conn.QueryRow(ctx, sqlAdmissionTaskLine, key, owner).Scan(&holders, &others); err != nil {
			return nil, 0, err
		}
		if others == 0 {
			return nil, int(holders), nil
		}
		rows, err := a.scanEntries(ctx, sqlAdmissionTaskRows, key, owner)
		return rows, int(holders), err
	}
	if err := a.conn.QueryRow(ctx, sqlAdmissionHolders, key, owner).Scan(&holders); err != nil {
		return nil, 0, err
	}
	rows, err := a.scanEntries(ctx, sqlAdmissionLine, key, owner)
	return rows, int(holders), err
}

const (
	sqlAdmissionTaskLine = `SELECT count(*) FILTER (WHERE holding AND owner <> $2::text), count(*) FILTER (WHERE NOT holding OR owner = $2::text)
FROM admission_entries WHERE key = $1::text`
	sqlAdmissionTaskRows = admissionRows + `WHERE e.key = $1::text AND (e.owner = $2::text OR NOT e.holding)`
)

// scanEntries runs a query selecting admissionRows' columns.
func (a admissionTx) scanEntries(ctx context.Context, query string, args ...any) ([]admission.Row, error) {
	rows, err := a.conn.Query(ctx, query, args...)
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

// sqlAdmissionDraw reads a limit, its bucket and the size of its line at
// once: the common draw (no one waiting) needs nothing else.
const sqlAdmissionDraw = `SELECT l.units, l.period_ms, l.burst, b.tokens, b.at,
	(SELECT count(*) FROM admission_entries e WHERE e.key = $3::text)
FROM (SELECT 1) one
LEFT JOIN rate_limits l ON l.name = $1::text
LEFT JOIN rate_buckets b ON b.limit_name = $1::text AND b.key = $2::text`

func (a admissionTx) Draw(ctx context.Context, limit, key string) (*admission.DrawState, error) {
	var (
		units, periodMS, burst, at *int64
		tokens                     *float64
		waiting                    int64
	)
	err := a.conn.QueryRow(ctx, sqlAdmissionDraw, limit, key, admission.RateKey(limit, key)).
		Scan(&units, &periodMS, &burst, &tokens, &at, &waiting)
	if err != nil {
		return nil, err
	}
	d := &admission.DrawState{Waiting: int(waiting)}
	if units != nil {
		d.Limit = &admission.Limit{Units: *units, Period: time.Duration(*periodMS) * time.Millisecond, Burst: *burst}
	}
	if tokens != nil {
		d.Bucket = &admission.Bucket{Tokens: *tokens, At: fromNanos(*at)}
	}
	return d, nil
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

// admitCreation decides a creation's admissions in order, stopping at the
// first refusal, which it records in params.Refused; it reports whether
// all were admitted.
func admitCreation(p *pipe, params *store.TaskCreateParams) bool {
	admitted := true
	p.interact(func(ctx context.Context, conn *pgx.Conn) error {
		tx := admissionTx{conn}
		if err := tx.lock(ctx); err != nil {
			return err
		}
		for _, r := range params.Admit {
			v, err := admission.Admit(ctx, tx, r, params.Task.CreatedAt, params.Aging)
			if err != nil {
				return fmt.Errorf("task %s: %w", params.Task.ID, err)
			}
			if !v.Admitted {
				params.Refused = append(params.Refused, store.Refusal{StepID: r.StepID, Verdict: *v})
				admitted = false
				return nil
			}
		}
		return nil
	})
	return admitted
}
