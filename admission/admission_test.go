package admission

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  Row
		want Status
	}{
		{"task running holds", Row{TaskState: state.InProgress}, Holding},
		{"task admitted, not yet started, holds", Row{TaskState: state.Pending, Holding: true}, Holding},
		{"task pending waits", Row{TaskState: state.Pending}, Waiting},
		{"task ended is stale", Row{TaskState: state.Complete, Holding: true}, Stale},
		{"task gone is stale", Row{Holding: true}, Stale},
		{"attempt running holds", Row{StepID: "s", Attempt: 2, Holding: true, TaskState: state.InProgress, StepState: state.InProgress, StepAttempts: 2}, Holding},
		{"attempt admitted, not yet sent, holds", Row{StepID: "s", Attempt: 2, Holding: true, TaskState: state.InProgress, StepState: state.Error, StepAttempts: 1}, Holding},
		{"attempt ended in error is stale", Row{StepID: "s", Attempt: 2, Holding: true, TaskState: state.InProgress, StepState: state.Error, StepAttempts: 2}, Stale},
		{"later attempt running is stale", Row{StepID: "s", Attempt: 1, Holding: true, TaskState: state.InProgress, StepState: state.InProgress, StepAttempts: 2}, Stale},
		{"step ready waits", Row{StepID: "s", Attempt: 1, TaskState: state.InProgress, StepState: state.Pending}, Waiting},
		{"step of a cancelled task is stale", Row{StepID: "s", Attempt: 1, TaskState: state.Cancelled, StepState: state.Pending}, Stale},
		{"admitted step of an errored task is stale", Row{StepID: "s", Attempt: 1, Holding: true, TaskState: state.Error, StepState: state.Pending}, Stale},
		{"completed step is stale", Row{StepID: "s", Attempt: 1, Holding: true, TaskState: state.InProgress, StepState: state.Complete, StepAttempts: 1}, Stale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Classify(&tc.row))
		})
	}
}

func entry(owner string, prio int, since time.Duration, holding bool) Entry {
	return Entry{Owner: owner, TaskID: "task-" + owner, Priority: prio, Since: t0.Add(since), Holding: holding}
}

func TestConcurrency(t *testing.T) {
	now := t0.Add(time.Minute)
	aging := time.Hour
	for _, tc := range []struct {
		name     string
		live     []Entry
		self     Entry
		max      int
		strategy string
		want     Decision
	}{
		{"room", nil, entry("n", 2, 50*time.Second, false), 1, StrategyQueue, Decision{Admit: true}},
		{"full", []Entry{entry("a", 2, 0, true)}, entry("n", 2, 50*time.Second, false), 1, StrategyQueue, Decision{Reason: ReasonConcurrency}},
		{"already holding", []Entry{entry("n", 2, 0, true), entry("a", 2, 0, true)}, entry("n", 2, 0, false), 1, StrategyQueue, Decision{Admit: true}},
		{"older waiter goes first", []Entry{entry("a", 2, 0, true), entry("w", 2, time.Second, false)}, entry("n", 2, 50*time.Second, false), 2, StrategyQueue, Decision{Reason: ReasonPriority}},
		{"higher priority goes first", []Entry{entry("w", 3, 30*time.Second, false)}, entry("n", 2, 10*time.Second, false), 1, StrategyQueue, Decision{Reason: ReasonPriority}},
		{"lower priority does not block", []Entry{entry("w", 1, 0, false)}, entry("n", 2, 30*time.Second, false), 1, StrategyQueue, Decision{Admit: true}},
		{"aged waiter overtakes", []Entry{entry("w", 1, -2*time.Hour, false)}, entry("n", 2, 30*time.Second, false), 1, StrategyQueue, Decision{Reason: ReasonPriority}},
		{"room behind waiters", []Entry{entry("w", 2, 0, false)}, entry("n", 2, 30*time.Second, false), 2, StrategyQueue, Decision{Admit: true}},
		{"cancel newest: full", []Entry{entry("a", 2, 0, true)}, entry("n", 2, 50*time.Second, false), 1, StrategyCancelNewest, Decision{Reason: ReasonCancelled}},
		{"cancel newest: a waiter fills it", []Entry{entry("a", 2, 0, true), entry("w", 2, 0, false)}, entry("n", 2, 50*time.Second, false), 2, StrategyCancelNewest, Decision{Reason: ReasonCancelled}},
		{"cancel newest: room", []Entry{entry("a", 2, 0, true)}, entry("n", 2, 50*time.Second, false), 2, StrategyCancelNewest, Decision{Admit: true}},
		{"cancel in progress: replaces the holder", []Entry{entry("a", 2, 0, true)}, entry("n", 2, 50*time.Second, false), 1, StrategyCancelInProgress, Decision{Reason: ReasonConcurrency, Cancel: []string{"task-a"}}},
		{"cancel in progress: oldest go, newest stay", []Entry{entry("a", 2, 0, true), entry("b", 2, time.Second, true), entry("c", 2, 2*time.Second, false)}, entry("n", 2, 50*time.Second, false), 2, StrategyCancelInProgress, Decision{Reason: ReasonConcurrency, Cancel: []string{"task-a", "task-b"}}},
		{"cancel in progress: a newer one replaces self", []Entry{entry("a", 2, 0, true), entry("z", 2, 55*time.Second, false)}, entry("n", 2, 50*time.Second, false), 1, StrategyCancelInProgress, Decision{Reason: ReasonCancelled}},
		{"cancel in progress: room", []Entry{entry("a", 2, 0, true)}, entry("n", 2, 50*time.Second, false), 2, StrategyCancelInProgress, Decision{Admit: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Concurrency(tc.live, 0, tc.self, tc.max, tc.strategy, now, aging))
		})
	}
}

func TestBucket(t *testing.T) {
	l := Limit{Units: 100, Period: time.Second, Burst: 20}
	b := l.Full(t0)
	require.Equal(t, 20.0, b.Tokens)
	b.Tokens = 0
	require.Equal(t, 5.0, l.Refill(b, t0.Add(50*time.Millisecond)).Tokens)
	require.Equal(t, 20.0, l.Refill(b, t0.Add(time.Hour)).Tokens, "never above the burst")
	require.Equal(t, 0.0, l.Refill(b, t0.Add(-time.Second)).Tokens, "a clock gone back adds nothing")
	require.Equal(t, t0.Add(30*time.Millisecond), l.Ready(b, 3, t0))
	require.Equal(t, t0, l.Ready(Bucket{Tokens: 3, At: t0}, 3, t0))
}

// TestBucketNeverExceedsRatePlusBurst takes tokens as fast as they come, at
// uneven instants, and checks every window: at most rate×window+burst.
func TestBucketNeverExceedsRatePlusBurst(t *testing.T) {
	l := Limit{Units: 10, Period: time.Second, Burst: 5}
	b := l.Full(t0)
	var taken []time.Time
	now := t0
	for i := range 2000 {
		now = now.Add(time.Duration(1+i%7) * 13 * time.Millisecond)
		b = l.Refill(b, now)
		if b.Tokens >= 1 {
			b.Tokens--
			taken = append(taken, now)
		}
	}
	require.Greater(t, len(taken), 200)
	for i := range taken {
		for j := i; j < len(taken); j++ {
			window := taken[j].Sub(taken[i])
			allowed := float64(l.Units)*window.Seconds()/l.Period.Seconds() + float64(l.Burst)
			require.LessOrEqual(t, float64(j-i+1), allowed+1e-9, "%d dispatches in %s", j-i+1, window)
		}
	}
}

// Holders read as a count count like listed ones.
func TestConcurrencyCountedHolders(t *testing.T) {
	now := t0.Add(time.Minute)
	self := entry("n", 2, 50*time.Second, false)
	require.Equal(t, Decision{Reason: ReasonConcurrency}, Concurrency(nil, 2, self, 2, StrategyQueue, now, time.Hour))
	require.Equal(t, Decision{Admit: true}, Concurrency(nil, 1, self, 2, StrategyQueue, now, time.Hour))
	require.Equal(t, Decision{Reason: ReasonPriority}, Concurrency([]Entry{entry("w", 2, 0, false)}, 1, self, 2, StrategyQueue, now, time.Hour))
}
