package plan

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestReady(t *testing.T) {
	t.Parallel()
	done := Step{State: state.Complete}
	resolved := Step{State: state.ResolvedManually}
	cases := []struct {
		name   string
		step   Step
		parent Step
		want   bool
	}{
		{"pending root-like with complete parent", Step{State: state.Pending}, done, true},
		{"pending with resolved parent", Step{State: state.Pending}, resolved, true},
		{"pending with pending parent", Step{State: state.Pending}, Step{State: state.Pending}, false},
		{"pending with running parent", Step{State: state.Pending}, Step{State: state.InProgress}, false},
		{"pending with errored parent", Step{State: state.Pending}, Step{State: state.Error, Retryable: true, MaxAttempts: 3}, false},
		{"pending but in flight", Step{State: state.Pending, InFlight: true}, done, false},
		{"in progress", Step{State: state.InProgress}, done, false},
		{"complete", Step{State: state.Complete}, done, false},
		{"cancelled", Step{State: state.Cancelled}, done, false},
		{"resolved", Step{State: state.ResolvedManually}, done, false},
		{"error retryable, due", Step{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3, NextRetryAt: t0}, done, true},
		{"error retryable, zero retry time", Step{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3}, done, true},
		{"error retryable, not yet due", Step{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3, NextRetryAt: t0.Add(time.Millisecond)}, done, false},
		{"error, attempts used up", Step{State: state.Error, Retryable: true, Attempts: 3, MaxAttempts: 3}, done, false},
		{"error, not retryable", Step{State: state.Error, Retryable: false, Attempts: 1, MaxAttempts: 3}, done, false},
		{"error retryable, due, parent not satisfied", Step{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3}, Step{State: state.Pending}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			child := tc.step
			child.Parents = []int{0}
			steps := []Step{tc.parent, child}
			require.Equal(t, tc.want, Ready(steps, 1, t0))
		})
	}
}

func TestReadyNeedsEveryParent(t *testing.T) {
	t.Parallel()
	steps := []Step{
		{State: state.Complete},
		{State: state.ResolvedManually},
		{State: state.InProgress},
		{State: state.Pending, Parents: []int{0, 1, 2}},
	}
	require.False(t, Ready(steps, 3, t0))
	steps[2].State = state.Complete
	require.True(t, Ready(steps, 3, t0))
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		steps   []Step
		outcome Outcome
		ready   []int
		wakeAt  time.Time
	}{
		{
			name:    "all roots ready",
			steps:   []Step{{State: state.Pending}, {State: state.Pending}, {State: state.Pending, Parents: []int{0, 1}}},
			outcome: Continue, ready: []int{0, 1},
		},
		{
			name:    "complete when every step complete or resolved",
			steps:   []Step{{State: state.Complete}, {State: state.ResolvedManually, Parents: []int{0}}},
			outcome: Complete,
		},
		{
			name:    "fail when a step is exhausted, even with others ready",
			steps:   []Step{{State: state.Error, Retryable: true, Attempts: 3, MaxAttempts: 3}, {State: state.Pending}},
			outcome: Fail,
		},
		{
			name:    "permanent failure fails at once",
			steps:   []Step{{State: state.Error, Retryable: false, Attempts: 1, MaxAttempts: 3}},
			outcome: Fail,
		},
		{
			name: "waiting on backoff gives the earliest wake time",
			steps: []Step{
				{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3, NextRetryAt: t0.Add(2 * time.Second)},
				{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3, NextRetryAt: t0.Add(time.Second)},
				{State: state.InProgress, InFlight: true},
			},
			outcome: Continue, wakeAt: t0.Add(time.Second),
		},
		{
			name:    "due retry is ready, not a wake",
			steps:   []Step{{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 2, NextRetryAt: t0}},
			outcome: Continue, ready: []int{0},
		},
		{
			name:    "children of a running step wait",
			steps:   []Step{{State: state.InProgress, InFlight: true}, {State: state.Pending, Parents: []int{0}}},
			outcome: Continue,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := Evaluate(tc.steps, t0)
			require.Equal(t, tc.outcome, v.Outcome)
			require.Equal(t, tc.ready, v.Ready)
			require.Equal(t, tc.wakeAt, v.WakeAt)
		})
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	def := Backoff{Initial: 2 * time.Second, Multiplier: 2, Max: 30 * time.Second}
	cases := []struct {
		name      string
		b         Backoff
		attempts  int
		requested time.Duration
		r         float64
		want      time.Duration
	}{
		{"first retry, no jitter (r=0.5)", def, 1, 0, 0.5, 2 * time.Second},
		{"second retry doubles", def, 2, 0, 0.5, 4 * time.Second},
		{"fourth retry", def, 4, 0, 0.5, 16 * time.Second},
		{"capped at max", def, 5, 0, 0.5, 30 * time.Second},
		{"huge attempt count stays capped", def, 10000, 0, 0.5, 30 * time.Second},
		{"jitter low edge", def, 1, 0, 0, 1800 * time.Millisecond},
		{"jitter high edge", def, 1, 0, 0.999999, 2199999600 * time.Nanosecond},
		{"jitter never exceeds max", def, 6, 0, 0.999999, 30 * time.Second},
		{"requested backoff wins as given", def, 1, 7 * time.Second, 0.9, 7 * time.Second},
		{"requested backoff may exceed max", def, 3, 45 * time.Second, 0, 45 * time.Second},
		{"millisecond policies for tests", Backoff{Initial: 10 * time.Millisecond, Multiplier: 2, Max: time.Second}, 3, 0, 0.5, 40 * time.Millisecond},
		{"attempts below one treated as one", def, 0, 0, 0.5, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := RetryDelay(tc.b, tc.attempts, tc.requested, tc.r)
			require.InDelta(t, float64(tc.want), float64(got), float64(time.Microsecond))
		})
	}
}

func TestRetriableExhausted(t *testing.T) {
	t.Parallel()
	cases := []struct {
		s                    Step
		retriable, exhausted bool
	}{
		{Step{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3}, true, false},
		{Step{State: state.Error, Retryable: true, Attempts: 3, MaxAttempts: 3}, false, true},
		{Step{State: state.Error, Retryable: false, Attempts: 1, MaxAttempts: 3}, false, true},
		{Step{State: state.Pending, Retryable: true, Attempts: 3, MaxAttempts: 3}, false, false},
		{Step{State: state.Complete}, false, false},
	}
	for _, tc := range cases {
		require.Equal(t, tc.retriable, Retriable(&tc.s), "%+v", tc.s)
		require.Equal(t, tc.exhausted, Exhausted(&tc.s), "%+v", tc.s)
	}
}
