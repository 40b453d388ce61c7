package admission

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Tx is what Admit needs from a store driver's write transaction.
type Tx interface {
	// Entries reads every entry of key, joined with its task and step.
	Entries(ctx context.Context, key string) ([]Row, error)
	// Line reads what a queue decision on key needs, cheaper than Entries
	// when many hold it: how many entries other than owner's hold key
	// (judged as Classify judges), and the rows of the others (waiting or
	// stale) and of owner. taskLevel says key's entries are all tasks',
	// which the store releases when their task ends (see
	// store.TaskAdvanceParams.Release), so their holding flag is exact.
	Line(ctx context.Context, key, owner string, taskLevel bool) (rows []Row, holders int, err error)
	// PutEntry inserts an entry, or updates the one of the same key and
	// owner: its attempt, priority and holding flag; Since is kept unless
	// reset is set.
	PutEntry(ctx context.Context, key string, e *Row, reset bool) error
	// DeleteEntries deletes the entries of key owned by owners.
	DeleteEntries(ctx context.Context, key string, owners []string) error
	// Draw reads, in one go, what a draw on a rate limit's bucket needs.
	Draw(ctx context.Context, limit, key string) (*DrawState, error)
	// PutBucket stores a bucket.
	PutBucket(ctx context.Context, limit, key string, b Bucket) error
}

// DrawState is a rate limit's definition (Limit unset if there is none by
// that name), its bucket (Bucket unset if never used) and how many entries
// wait in line for the bucket.
type DrawState struct {
	Limit   *Limit
	Bucket  *Bucket
	Waiting int
}

// Request asks to start a task (StepID "") or an attempt of a step.
type Request struct {
	TaskID, StepID string
	// Attempt is the attempt to start (steps only).
	Attempt  int
	Priority int
	Keys     []KeyClaim
	Tokens   []TokenClaim
}

// KeyClaim asks for a place in a concurrency key.
type KeyClaim struct {
	Key        string
	MaxRunning int
	Strategy   string
}

// TokenClaim asks for units of a rate limit's bucket (Key "" for the
// limit's single bucket).
type TokenClaim struct {
	Limit, Key string
	Units      int
}

// Verdict is Admit's answer. When not admitted, Reason and Key say what
// the request waits on, RetryAt when tokens will be there (rate limits),
// and Cancel which tasks the request replaces (cancel_in_progress).
type Verdict struct {
	Admitted bool
	Reason   string
	Key      string
	RetryAt  time.Time
	Cancel   []string
}

// Admit decides r at now, all or nothing: either every key gets a holder
// and every bucket gives its units, or nothing is taken and r waits in
// line on each of its keys and buckets (its place kept for the next try).
// The caller runs it in the write transaction of the dispatch it allows;
// on PostgreSQL, admissions of concurrent coordinators must be serialized
// (a lock held to commit) before it is called.
func Admit(ctx context.Context, tx Tx, r *Request, now time.Time, aging time.Duration) (*Verdict, error) {
	owner := r.StepID
	if owner == "" {
		owner = r.TaskID
	}
	self := Entry{Owner: owner, TaskID: r.TaskID, Priority: r.Priority, Since: now}
	var refused *Verdict
	refuse := func(v *Verdict) {
		// The first refusal is the one reported, except that a
		// cancellation of the newcomer outranks waiting.
		if refused == nil || v.Reason == ReasonCancelled {
			refused = v
		}
	}
	// put records self on a key: kept in line (or holding) if its entry
	// is for this attempt, renewed otherwise.
	put := func(key string, rows []Row, holding bool) error {
		var mine *Row
		for i := range rows {
			if rows[i].Owner == owner {
				mine = &rows[i]
			}
		}
		reset := mine == nil || r.StepID != "" && mine.Attempt != r.Attempt || mine.Holding && Classify(mine) == Stale
		return tx.PutEntry(ctx, key, &Row{Owner: owner, TaskID: r.TaskID, StepID: r.StepID, Attempt: r.Attempt, Priority: r.Priority, Since: now, Holding: holding}, reset)
	}

	keyRows := make([][]Row, len(r.Keys))
	for i, k := range r.Keys {
		var (
			rows    []Row
			holders int
			err     error
		)
		if k.Strategy == StrategyQueue || k.Strategy == "" {
			// Only a cancelling strategy needs to know who holds the key.
			rows, holders, err = tx.Line(ctx, k.Key, owner, r.StepID == "")
		} else {
			rows, err = tx.Entries(ctx, k.Key)
		}
		if err != nil {
			return nil, fmt.Errorf("admit %s on %s: %w", owner, k.Key, err)
		}
		keyRows[i] = rows
		live, stale := Live(rows)
		if len(stale) > 0 {
			if err := tx.DeleteEntries(ctx, k.Key, stale); err != nil {
				return nil, fmt.Errorf("admit %s on %s: %w", owner, k.Key, err)
			}
		}
		me := self
		for _, e := range live {
			if e.Owner == owner && !e.Holding {
				me.Since = e.Since // its place in line
			}
		}
		if d := Concurrency(live, holders, me, k.MaxRunning, k.Strategy, now, aging); !d.Admit {
			refuse(&Verdict{Reason: d.Reason, Key: k.Key, Cancel: d.Cancel})
		}
	}

	type take struct {
		limit Limit
		b     Bucket
		// queued: entries wait for the bucket, perhaps this request's.
		queued bool
	}
	takes := make([]take, len(r.Tokens))
	for i, t := range r.Tokens {
		d, err := tx.Draw(ctx, t.Limit, t.Key)
		if err != nil {
			return nil, fmt.Errorf("admit %s on rate limit %s: %w", owner, t.Limit, err)
		}
		if d.Limit == nil {
			// Deleted after the template was registered: the step waits
			// until it is defined again; a retry a period later sees it.
			refuse(&Verdict{Reason: ReasonRateLimit, Key: Describe(t.Limit, t.Key), RetryAt: now.Add(time.Second)})
			continue
		}
		l := *d.Limit
		b := l.Full(now)
		if d.Bucket != nil {
			b = *d.Bucket
		}
		if now.Before(b.At) {
			// Another coordinator's clock, or a request that waited for
			// the lock, is ahead: take nothing at a time before the
			// bucket's, so the stored dispatch times keep to the rate.
			refuse(&Verdict{Reason: ReasonRateLimit, Key: Describe(t.Limit, t.Key), RetryAt: b.At})
			continue
		}
		b = l.Refill(b, now)
		takes[i] = take{l, b, d.Waiting > 0}
		me := self
		var live []Entry
		if d.Waiting > 0 {
			rk := RateKey(t.Limit, t.Key)
			rows, err := tx.Entries(ctx, rk)
			if err != nil {
				return nil, fmt.Errorf("admit %s on rate limit %s: %w", owner, t.Limit, err)
			}
			var stale []string
			live, stale = Live(rows)
			if len(stale) > 0 {
				if err := tx.DeleteEntries(ctx, rk, stale); err != nil {
					return nil, fmt.Errorf("admit %s on rate limit %s: %w", owner, t.Limit, err)
				}
			}
			for _, e := range live {
				if e.Owner == owner {
					me.Since = e.Since
				}
			}
		}
		// The waiters before this one are served first: it takes its units
		// only if enough are left after theirs, and otherwise comes back
		// when they will be.
		need := t.Units * (1 + AheadCount(live, me, now, aging))
		switch {
		case b.Tokens < float64(t.Units):
			refuse(&Verdict{Reason: ReasonRateLimit, Key: Describe(t.Limit, t.Key), RetryAt: l.Ready(b, need, now)})
		case b.Tokens < float64(need):
			refuse(&Verdict{Reason: ReasonPriority, Key: Describe(t.Limit, t.Key), RetryAt: l.Ready(b, need, now)})
		}
	}

	if refused != nil {
		if refused.Reason == ReasonCancelled {
			return refused, nil // the newcomer is cancelled: it waits for nothing
		}
		for i, k := range r.Keys {
			if err := put(k.Key, keyRows[i], false); err != nil {
				return nil, fmt.Errorf("admit %s on %s: %w", owner, k.Key, err)
			}
		}
		for _, t := range r.Tokens {
			rk := RateKey(t.Limit, t.Key)
			rows, err := tx.Entries(ctx, rk)
			if err != nil {
				return nil, err
			}
			if err := put(rk, rows, false); err != nil {
				return nil, fmt.Errorf("admit %s on rate limit %s: %w", owner, t.Limit, err)
			}
		}
		slices.Sort(refused.Cancel)
		return refused, nil
	}
	for i, k := range r.Keys {
		if err := put(k.Key, keyRows[i], true); err != nil {
			return nil, fmt.Errorf("admit %s on %s: %w", owner, k.Key, err)
		}
	}
	for i, t := range r.Tokens {
		b := takes[i].b
		b.Tokens -= float64(t.Units)
		if err := tx.PutBucket(ctx, t.Limit, t.Key, b); err != nil {
			return nil, fmt.Errorf("admit %s on rate limit %s: %w", owner, t.Limit, err)
		}
		if takes[i].queued {
			if err := tx.DeleteEntries(ctx, RateKey(t.Limit, t.Key), []string{owner}); err != nil {
				return nil, fmt.Errorf("admit %s on rate limit %s: %w", owner, t.Limit, err)
			}
		}
	}
	return &Verdict{Admitted: true}, nil
}
