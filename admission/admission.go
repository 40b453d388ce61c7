// Package admission decides whether a task or a step may start under flow
// control: concurrency keys (at most N running per key value) and rate
// limits (token buckets). The decisions are pure functions over what the
// store holds; Admit runs them inside a store driver's write transaction,
// through the small Tx interface each driver implements, so the decision
// and the dispatch it allows commit together.
//
// A step's holding is derived, never bookkept: its entry counts as running
// while its attempt is, judged from the step's row in the same transaction
// (Classify), so a crash between admission and dispatch or a lost attempt
// frees the key by itself. A task's entry is flagged when it is admitted
// and deleted by the store in the commit that ends the task, so its count
// needs no joins; either way the holders change only with the stored
// transitions.
package admission

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/tasker-go/tasker/state"
)

// Strategies for a full concurrency key, as in templates.
const (
	// StrategyQueue waits for the key, highest priority first, then in
	// order of arrival.
	StrategyQueue = "queue"
	// StrategyCancelInProgress cancels the oldest holders and waiters of
	// the key so the newcomer runs.
	StrategyCancelInProgress = "cancel_in_progress"
	// StrategyCancelNewest cancels the newcomer when the key is full.
	StrategyCancelNewest = "cancel_newest"
)

// Reasons a request is not admitted; they are the waiting reasons users
// see.
const (
	// ReasonConcurrency: the key has max_running holders.
	ReasonConcurrency = "concurrency"
	// ReasonRateLimit: the bucket has too few tokens.
	ReasonRateLimit = "rate_limit"
	// ReasonPriority: there is room, but a waiter that goes first is
	// ahead.
	ReasonPriority = "priority"
	// ReasonCancelled: the key is full and its strategy cancels the
	// newcomer.
	ReasonCancelled = "cancelled"
)

// Status is what an entry counts as, derived from its task and step.
type Status int

const (
	// Stale entries count for nothing and are deleted when seen.
	Stale Status = iota
	// Holding entries occupy a place of the key.
	Holding
	// Waiting entries are in line for the key.
	Waiting
)

// Row is an entry of a key as the store reads it, joined with the state of
// its task and step ("" when the row is gone).
type Row struct {
	Owner    string
	TaskID   string
	StepID   string // "" for a task-level entry
	Attempt  int    // the attempt admitted or asked for (step-level)
	Priority int
	Since    time.Time
	Holding  bool

	TaskState    state.State
	TaskCreated  time.Time
	StepState    state.State
	StepAttempts int
}

// Classify derives what r counts as. A task-level entry holds while its
// task runs (in_progress, or pending once admitted) and waits while the
// task is pending. A step-level entry holds from the admission of an
// attempt until that attempt ends, and waits while its step is ready to be
// dispatched; in a task that is no longer running it is stale.
func Classify(r *Row) Status {
	taskActive := r.TaskState == state.Pending || r.TaskState == state.InProgress
	if r.StepID == "" {
		switch {
		case r.TaskState == state.InProgress, r.TaskState == state.Pending && r.Holding:
			return Holding
		case r.TaskState == state.Pending:
			return Waiting
		}
		return Stale
	}
	beforeDispatch := (r.StepState == state.Pending || r.StepState == state.Error) && taskActive
	switch {
	case r.Holding && r.StepState == state.InProgress && r.StepAttempts == r.Attempt:
		return Holding
	case r.Holding && beforeDispatch && r.StepAttempts == r.Attempt-1:
		return Holding
	case !r.Holding && beforeDispatch:
		return Waiting
	}
	return Stale
}

// Entry is a live entry of a key.
type Entry struct {
	Owner    string
	TaskID   string
	Priority int
	// Since orders entries of equal priority: the task's creation for a
	// task-level entry, the first request for a step-level one.
	Since   time.Time
	Holding bool
}

// Live classifies rows, returning the live entries and the owners of the
// stale ones.
func Live(rows []Row) (live []Entry, stale []string) {
	for i := range rows {
		r := &rows[i]
		status := Classify(r)
		if status == Stale {
			stale = append(stale, r.Owner)
			continue
		}
		since := r.Since
		if r.StepID == "" && !r.TaskCreated.IsZero() {
			since = r.TaskCreated
		}
		live = append(live, Entry{Owner: r.Owner, TaskID: r.TaskID, Priority: r.Priority, Since: since, Holding: status == Holding})
	}
	return live, stale
}

// Effective is a priority raised by one level per aging waited, so a low
// priority is never passed over for ever.
func Effective(priority int, since, now time.Time, aging time.Duration) int64 {
	p := int64(priority)
	if aging > 0 && now.After(since) {
		p += int64(now.Sub(since) / aging)
	}
	return p
}

// Before orders two waiters: higher effective priority first, then the
// one that came first, then by owner so the order is total.
func Before(a, b *Entry, now time.Time, aging time.Duration) bool {
	if pa, pb := Effective(a.Priority, a.Since, now, aging), Effective(b.Priority, b.Since, now, aging); pa != pb {
		return pa > pb
	}
	if !a.Since.Equal(b.Since) {
		return a.Since.Before(b.Since)
	}
	return a.Owner < b.Owner
}

// Decision is the outcome for one key.
type Decision struct {
	Admit  bool
	Reason string
	// Cancel lists the tasks to cancel for the newcomer
	// (cancel_in_progress).
	Cancel []string
}

// Concurrency decides for self on a key with at most max holders. live
// holds the key's live entries, self's included or not; held counts
// further holders not in live (read as a count, for the queue strategy).
func Concurrency(live []Entry, held int, self Entry, max int, strategy string, now time.Time, aging time.Duration) Decision {
	holders, ahead, others := held, 0, held
	for i := range live {
		e := &live[i]
		if e.Owner == self.Owner {
			if e.Holding {
				return Decision{Admit: true}
			}
			continue
		}
		others++
		if e.Holding {
			holders++
		} else if strategy == StrategyQueue && Before(e, &self, now, aging) ||
			strategy != StrategyQueue && e.Since.Before(self.Since) {
			ahead++
		}
	}
	switch strategy {
	case StrategyCancelNewest:
		// The newcomer runs only if nobody is running or in line.
		if others >= max {
			return Decision{Reason: ReasonCancelled}
		}
	case StrategyCancelInProgress:
		// The newest max entries survive, everyone older is cancelled,
		// so a newcomer runs as soon as those it replaces have ended.
		all := make([]Entry, 0, len(live)+1)
		for _, e := range live {
			if e.Owner != self.Owner {
				all = append(all, e)
			}
		}
		all = append(all, self)
		slices.SortFunc(all, func(a, b Entry) int {
			return cmp.Or(b.Since.Compare(a.Since), cmp.Compare(b.Owner, a.Owner))
		})
		var d Decision
		for i, e := range all {
			switch {
			case i < max:
			case e.Owner == self.Owner:
				return Decision{Reason: ReasonCancelled}
			default:
				d.Cancel = append(d.Cancel, e.TaskID)
			}
		}
		slices.Sort(d.Cancel)
		if len(d.Cancel) > 0 || holders >= max {
			d.Reason = ReasonConcurrency
			return d
		}
		return Decision{Admit: true}
	}
	switch {
	case holders >= max:
		return Decision{Reason: ReasonConcurrency}
	case holders+ahead >= max:
		return Decision{Reason: ReasonPriority}
	}
	return Decision{Admit: true}
}

// Limit is a rate limit: Units per Period, with bursts up to Burst.
type Limit struct {
	Units  int64
	Period time.Duration
	Burst  int64
}

// Bucket is a token bucket's stored state: Tokens as of At.
type Bucket struct {
	Tokens float64
	At     time.Time
}

// Full is a bucket never used before.
func (l Limit) Full(now time.Time) Bucket { return Bucket{Tokens: float64(l.Burst), At: now} }

// Refill is b at now: tokens accrue at Units per Period up to Burst. A
// clock that went back refills nothing.
func (l Limit) Refill(b Bucket, now time.Time) Bucket {
	if !now.After(b.At) {
		return Bucket{Tokens: b.Tokens, At: b.At}
	}
	add := float64(now.Sub(b.At)) * float64(l.Units) / float64(l.Period)
	return Bucket{Tokens: math.Min(float64(l.Burst), b.Tokens+add), At: now}
}

// Ready is when b (refilled to now) holds units tokens.
func (l Limit) Ready(b Bucket, units int, now time.Time) time.Time {
	short := float64(units) - b.Tokens
	if short <= 0 {
		return now
	}
	wait := time.Duration(math.Ceil(short * float64(l.Period) / float64(l.Units)))
	return now.Add(wait)
}

// AheadCount counts the live waiters other than self that go before it.
func AheadCount(live []Entry, self Entry, now time.Time, aging time.Duration) int {
	n := 0
	for i := range live {
		if e := &live[i]; e.Owner != self.Owner && !e.Holding && Before(e, &self, now, aging) {
			n++
		}
	}
	return n
}

// RateKey is the entry key under which waiters for a bucket line up.
func RateKey(limit, key string) string {
	return "rate:" + limit + ":" + key
}

// Describe names a bucket for people: the limit, and its key if any.
func Describe(limit, key string) string {
	if key == "" {
		return limit
	}
	return limit + "[" + key + "]"
}
