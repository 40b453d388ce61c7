package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"time"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/state"
)

// admissionTx gives package admission the rows it decides on, inside the
// write transaction of the dispatch it allows. SQLite has one writer, so
// admissions are serialized without a lock.
type admissionTx struct{ tx *wtx }

// admissionRows selects an entry joined with its task and step, the
// columns scanEntries reads.
const admissionRows = `SELECT e.owner, e.task_id, COALESCE(e.step_id, ''), e.attempt, e.priority, e.since, e.holding,
	COALESCE(t.state, ''), COALESCE(t.created_at, 0), COALESCE(s.state, ''), COALESCE(s.attempts, 0)
FROM admission_entries e
LEFT JOIN tasks t ON t.id = e.task_id
LEFT JOIN steps s ON s.id = e.step_id
`

const sqlAdmissionEntries = admissionRows + `WHERE e.key = ?`

func (a admissionTx) Entries(ctx context.Context, key string) ([]admission.Row, error) {
	out, err := a.scanEntries(ctx, sqlAdmissionEntries, key)
	if err == nil && len(out) == 0 {
		a.tx.buckets.waiting(key, false)
	}
	return out, err
}

// scanEntries runs a query selecting admissionRows' columns.
func (a admissionTx) scanEntries(ctx context.Context, query string, args ...any) ([]admission.Row, error) {
	rows, err := a.tx.QueryContext(ctx, query, args...)
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

// admissionHolds is Classify's Holding, in SQL over sqlAdmissionEntries'
// joins (NULL, for a missing task or step, is not holding).
const admissionHolds = `COALESCE((e.step_id IS NULL AND (t.state = 'in_progress' OR (t.state = 'pending' AND e.holding)))
	OR (e.step_id IS NOT NULL AND e.holding AND (
		(s.state = 'in_progress' AND s.attempts = e.attempt)
		OR (s.state IN ('pending', 'error') AND s.attempts = e.attempt - 1 AND t.state IN ('pending', 'in_progress')))), 0)`

const (
	sqlAdmissionHolders = `SELECT count(*) FROM admission_entries e
LEFT JOIN tasks t ON t.id = e.task_id
LEFT JOIN steps s ON s.id = e.step_id
WHERE e.key = ?1 AND e.owner <> ?2 AND ` + admissionHolds
	sqlAdmissionLine = admissionRows + `WHERE e.key = ?1 AND (e.owner = ?2 OR NOT ` + admissionHolds + `)`
)

func (a admissionTx) Line(ctx context.Context, key, owner string, taskLevel bool) ([]admission.Row, int, error) {
	var holders int
	if taskLevel {
		// Released when their task ends, a key's task entries hold exactly
		// when flagged: count them without joins, and read rows only if
		// any others wait (or this one has an entry).
		var others int
		if err := a.tx.QueryRowContext(ctx, sqlAdmissionTaskLine, key, owner).Scan(&holders, &others); err != nil {
			return nil, 0, err
		}
		if others == 0 {
			return nil, holders, nil
		}
		rows, err := a.scanEntries(ctx, sqlAdmissionTaskRows, key, owner)
		return rows, holders, err
	}
	if err := a.tx.QueryRowContext(ctx, sqlAdmissionHolders, key, owner).Scan(&holders); err != nil {
		return nil, 0, err
	}
	rows, err := a.scanEntries(ctx, sqlAdmissionLine, key, owner)
	return rows, holders, err
}

const (
	sqlAdmissionTaskLine = `SELECT COALESCE(SUM(holding AND owner <> ?2), 0), COALESCE(SUM(NOT holding OR owner = ?2), 0)
FROM admission_entries WHERE key = ?1`
	sqlAdmissionTaskRows = admissionRows + `WHERE e.key = ?1 AND (e.owner = ?2 OR NOT e.holding)`
	// sqlAdmissionRelease drops the entries of the tasks (a JSON array of
	// ids) that ended in a batch.
	sqlAdmissionRelease = `DELETE FROM admission_entries WHERE task_id IN (SELECT value FROM json_each(?))`
)

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
	a.tx.buckets.waiting(key, true)
	_, err := a.tx.ExecContext(ctx, sqlPutAdmissionEntry, key, e.Owner, e.TaskID, step, e.Attempt, e.Priority,
		toNanos(e.Since), e.Holding, reset)
	return err
}

const sqlDeleteAdmissionEntry = `DELETE FROM admission_entries WHERE key = ? AND owner = ?`

func (a admissionTx) DeleteEntries(ctx context.Context, key string, owners []string) error {
	for _, o := range owners {
		if _, err := a.tx.ExecContext(ctx, sqlDeleteAdmissionEntry, key, o); err != nil {
			return err
		}
	}
	return nil
}

// buckets cache the rate limits' definitions and tokens. A SQLite database
// has one writer, the committer, which alone reads and changes them inside
// its transactions, so the cache is exact: a draw reads nothing from the
// database and writes its bucket back in the dispatch's transaction (a
// write that fails leaves the cache with fewer tokens than stored, which
// only slows the rate until the next restart). lines are the rate keys
// that may have entries waiting in line, so the common draw, with no one
// waiting, reads no entries either.
type buckets struct {
	mu    sync.Mutex
	at    map[bucketKey]admission.Bucket
	lines map[string]bool
	// limits caches definitions; the writes that change one forget it.
	limits map[string]admission.Limit
	// dirty are the buckets drawn from since the batch began.
	dirty map[bucketKey]struct{}
	// version is the database's data_version when the cache was last
	// known to be exact; another writer's commit changes it.
	version int64
}

type bucketKey struct{ limit, key string }

const sqlRateLines = `SELECT DISTINCT key FROM admission_entries WHERE key LIKE 'rate:%'`

func (a admissionTx) Draw(ctx context.Context, limit, key string) (*admission.DrawState, error) {
	b := a.tx.buckets
	b.mu.Lock()
	l, cached := b.limits[limit]
	b.mu.Unlock()
	if !cached {
		var periodMS int64
		err := a.tx.QueryRowContext(ctx, sqlRateLimit, limit).Scan(&l.Units, &periodMS, &l.Burst)
		if errors.Is(err, sql.ErrNoRows) {
			return &admission.DrawState{}, nil
		}
		if err != nil {
			return nil, err
		}
		l.Period = time.Duration(periodMS) * time.Millisecond
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limits[limit] = l
	d := &admission.DrawState{Limit: &l}
	bk, ok := b.at[bucketKey{limit, key}]
	if !ok {
		var at int64
		err := a.tx.QueryRowContext(ctx, sqlBucket, limit, key).Scan(&bk.Tokens, &at)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			bk = l.Full(time.Time{}) // never used: full
		case err != nil:
			return nil, err
		default:
			bk.At = fromNanos(at)
		}
		b.at[bucketKey{limit, key}] = bk
	}
	d.Bucket = &bk
	if b.lines[admission.RateKey(limit, key)] {
		d.Waiting = 1 // Admit reads the line
	}
	return d, nil
}

// stale reports whether another writer on the file has committed since
// the cache was last exact (data_version moved).
func (b *buckets) stale(version int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return version != b.version
}

// reset empties the cache for data_version version, with the rate keys
// that now have entries in line.
func (b *buckets) reset(version int64, lines []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.version = version
	clear(b.at)
	clear(b.limits)
	clear(b.lines)
	for _, k := range lines {
		b.lines[k] = true
	}
}

// invalidate makes the cache stale whatever the database's data_version,
// dropping the draws not yet written: the next batch reads the buckets and
// lines as stored.
func (b *buckets) invalidate() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.version = -1
	clear(b.dirty)
}

// forget drops a limit's cached definition and its buckets' tokens: a
// changed limit starts again from empty buckets.
func (b *buckets) forget(limit string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.limits, limit)
	for k := range b.at {
		if k.limit == limit {
			delete(b.at, k)
		}
	}
}

// waiting records whether a rate key may have entries in line.
func (b *buckets) waiting(key string, may bool) {
	if !strings.HasPrefix(key, "rate:") {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if may {
		b.lines[key] = true
	} else {
		delete(b.lines, key)
	}
}

const sqlRateLimit = `SELECT units, period_ms, burst FROM rate_limits WHERE name = ?`

// PutBucket changes the cached bucket; the batch writes it once, before it
// commits (see flush), however many draws took from it.
func (a admissionTx) PutBucket(_ context.Context, limit, key string, bk admission.Bucket) error {
	b := a.tx.buckets
	b.mu.Lock()
	defer b.mu.Unlock()
	k := bucketKey{limit, key}
	b.at[k] = bk
	if b.dirty == nil {
		b.dirty = map[bucketKey]struct{}{}
	}
	b.dirty[k] = struct{}{}
	return nil
}

// flush writes the buckets the batch drew from, in its transaction, just
// before it commits. A draw whose request was then rolled back to its
// savepoint still counts: the stored tokens are never more than what is
// left, so a restart never gives more than the rate allows.
func (b *buckets) flush(ctx context.Context, tx *wtx) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.dirty {
		bk := b.at[k]
		if _, err := tx.ExecContext(ctx, sqlPutBucket, k.limit, k.key, bk.Tokens, toNanos(bk.At)); err != nil {
			return fmt.Errorf("write rate-limit bucket %s: %w", admission.Describe(k.limit, k.key), err)
		}
	}
	clear(b.dirty)
	return nil
}

const (
	sqlBucket    = `SELECT tokens, at FROM rate_buckets WHERE limit_name = ? AND key = ?`
	sqlPutBucket = `INSERT INTO rate_buckets (limit_name, key, tokens, at) VALUES (?, ?, ?, ?)
ON CONFLICT (limit_name, key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at`
)
