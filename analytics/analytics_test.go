package analytics

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus s seconds; d is s seconds.
func at(s float64) time.Time    { return t0.Add(d(s)) }
func d(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// The DAG of most cases: a → {b, c} → d.
var diamond = []Step{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"a"}}, {Name: "d", DependsOn: []string{"b", "c"}}}

// Transition builders, named for what the engine records.
func taskMove(from, to state.State, s float64) Transition {
	return Transition{From: from, To: to, At: at(s)}
}
func dispatch(step string, attempt int, s float64) Transition {
	from := state.Pending
	return Transition{Step: step, From: from, To: state.InProgress, At: at(s), Attempt: attempt}
}
func complete(step string, attempt int, s float64) Transition {
	return Transition{Step: step, From: state.InProgress, To: state.Complete, At: at(s), Attempt: attempt}
}
func fail(step string, attempt int, s float64, msg, class string, retryAt float64) Transition {
	tr := Transition{Step: step, From: state.InProgress, To: state.Error, At: at(s), Attempt: attempt, Message: msg, Class: class}
	if retryAt > 0 {
		tr.RetryAt = at(retryAt)
	}
	return tr
}
func repend(step string, attempt int, s float64) Transition {
	return Transition{Step: step, From: state.Error, To: state.Pending, At: at(s), Attempt: attempt}
}

// The four tasks of the combined case, times in seconds after t0.
//
// t1 completes at 12: a runs 0–2; c starts at 2, fails at 4 with its retry
// due at 6, is retried at 7 (queue 1) and completes at 9; b waits from 2 to
// 3 (queue 1) and runs to 10; d is ready at 10 (its last parent, b),
// dispatched at 10.5 and done at 12. Critical path d ← b ← a: 2 + 8 + 2.
func task1() *Task {
	return &Task{ID: "t1", State: state.Complete, CreatedAt: at(0), FinishedAt: at(12), Steps: diamond, Transitions: []Transition{
		dispatch("a", 1, 0), taskMove(state.Pending, state.InProgress, 0),
		complete("a", 1, 2), dispatch("c", 1, 2),
		dispatch("b", 1, 3),
		fail("c", 1, 4, "boom", "E", 6),
		repend("c", 1, 7), dispatch("c", 2, 7),
		complete("c", 2, 9),
		complete("b", 1, 10),
		dispatch("d", 1, 10.5),
		complete("d", 1, 12), taskMove(state.InProgress, state.Complete, 12),
	}}
}

// t2 ends in error at 104: a fails at 101 (retry due 101.5, dispatched at
// 102: queue 0.5) and again at 104 with no attempt left.
func task2() *Task {
	return &Task{ID: "t2", State: state.Error, CreatedAt: at(100), FinishedAt: at(104), Steps: diamond, Transitions: []Transition{
		dispatch("a", 1, 100), taskMove(state.Pending, state.InProgress, 100),
		fail("a", 1, 101, "boom", "", 101.5),
		repend("a", 1, 102), dispatch("a", 2, 102),
		fail("a", 2, 104, "timeout", "Timeout", 0), taskMove(state.InProgress, state.Error, 104),
	}}
}

// t3 is cancelled at 205 while a, dispatched at 201 (queue 1: no slot
// until then), is running: an attempt with no running time.
func task3() *Task {
	return &Task{ID: "t3", State: state.Cancelled, CreatedAt: at(200), FinishedAt: at(205), Steps: diamond, Transitions: []Transition{
		dispatch("a", 1, 201), taskMove(state.Pending, state.InProgress, 201),
		{Step: "a", From: state.InProgress, To: state.Cancelled, At: at(205), Attempt: 1},
		taskMove(state.InProgress, state.Cancelled, 205),
	}}
}

// t4 completes at 312 after an operator's retry: c fails for good at 303,
// the task errs; at 310 the operator retries (c and the task back to
// pending), c is dispatched at 310.2 (queue 0.2 from the retry, not from
// the failure) and completes at 311; d runs 311–312. Critical path
// d ← c ← a: 1 + 10 + 1, c's span holding the time the task sat in error.
func task4() *Task {
	return &Task{ID: "t4", State: state.Complete, CreatedAt: at(300), FinishedAt: at(312), Steps: diamond, Transitions: []Transition{
		dispatch("a", 1, 300), taskMove(state.Pending, state.InProgress, 300),
		complete("a", 1, 301), dispatch("b", 1, 301), dispatch("c", 1, 301),
		complete("b", 1, 302),
		fail("c", 1, 303, "boom", "E", 0), taskMove(state.InProgress, state.Error, 303),
		repend("c", 1, 310), taskMove(state.Error, state.Pending, 310),
		dispatch("c", 2, 310.2), taskMove(state.Pending, state.InProgress, 310.2),
		complete("c", 2, 311), dispatch("d", 1, 311),
		complete("d", 1, 312), taskMove(state.InProgress, state.Complete, 312),
	}}
}

func pct(count int, p50, p95, p99 float64) Percentiles {
	return Percentiles{Count: count, P50: d(p50), P95: d(p95), P99: d(p99)}
}

func TestReport(t *testing.T) {
	t.Parallel()
	order := []string{"a", "b", "c", "d"}
	cases := []struct {
		name         string
		since, until float64
		order        []string
		tasks        []*Task
		want         *Report
	}{
		{
			name: "no tasks", since: 0, until: 3600, order: order,
			want: &Report{
				Since: at(0), Until: at(3600),
				Steps:     []StepStats{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}},
				TopErrors: []ErrorCount{},
			},
		},
		{
			// Ten minutes, four tasks.
			name: "combined", since: 0, until: 600, order: order,
			tasks: []*Task{task1(), task2(), task3(), task4()},
			want: &Report{
				Since: at(0), Until: at(600),
				Finished: 4, Completed: 2, Errored: 1, Cancelled: 1,
				ThroughputPerMinute: 0.4, SuccessRate: 0.5, ErrorRate: 0.25, CancelRate: 0.25,
				// Durations 4, 5, 12, 12: rank 2 of 4 is 5, rank 4 is 12.
				Duration: pct(4, 5, 12, 12),
				// Retries: a once (t2), c twice (t1, t4), over 5+2+4+2
				// attempts.
				RetryRate: 3.0 / 13,
				Steps: []StepStats{
					// Running 2 (t1), 1 and 2 (t2), 1 (t4); queue 0 (t1),
					// 0 and 0.5 (t2), 1 (t3), 0 (t4).
					{Name: "a", Running: pct(4, 1, 2, 2), QueueWait: pct(5, 0, 1, 1), Attempts: 5, Retries: 1, Failures: 2, CriticalPathShare: 3.0 / 24},
					// Running 7 (t1), 1 (t4); queue 1 (t1), 0 (t4).
					{Name: "b", Running: pct(2, 1, 7, 7), QueueWait: pct(2, 0, 1, 1), Attempts: 2, CriticalPathShare: 8.0 / 24},
					// Running 2 and 2 (t1), 2 and 0.8 (t4); queue 0 and 1
					// (t1), 0 and 0.2 (t4).
					{Name: "c", Running: pct(4, 2, 2, 2), QueueWait: pct(4, 0, 1, 1), Attempts: 4, Retries: 2, Failures: 2, CriticalPathShare: 10.0 / 24},
					// Running 1.5 (t1), 1 (t4); queue 0.5 (t1), 0 (t4).
					{Name: "d", Running: pct(2, 1, 1.5, 1.5), QueueWait: pct(2, 0, 0.5, 0.5), Attempts: 2, CriticalPathShare: 3.0 / 24},
				},
				TopErrors: []ErrorCount{
					{Step: "c", Class: "E", Message: "boom", Count: 2},
					{Step: "a", Message: "boom", Count: 1},
					{Step: "a", Class: "Timeout", Message: "timeout", Count: 1},
				},
				Bottleneck: "c", BottleneckShare: 10.0 / 24,
			},
		},
		{
			// x fails for good at 0.5 and the task errs; a's result
			// still lands at 1, but b is not dispatched while the task
			// is in error. The operator resolves x at 5 (the task
			// resumes), b goes at 5.1: its queue wait starts at the
			// resume, not at a's completion.
			name: "resume bounds readiness", since: 0, until: 60, order: []string{"x", "a", "b"},
			tasks: []*Task{{ID: "r", State: state.Complete, CreatedAt: at(0), FinishedAt: at(6),
				Steps: []Step{{Name: "x"}, {Name: "a"}, {Name: "b", DependsOn: []string{"a"}}},
				Transitions: []Transition{
					dispatch("x", 1, 0), dispatch("a", 1, 0), taskMove(state.Pending, state.InProgress, 0),
					fail("x", 1, 0.5, "no", "", 0), taskMove(state.InProgress, state.Error, 0.5),
					complete("a", 1, 1),
					{Step: "x", From: state.Error, To: state.ResolvedManually, At: at(5)}, taskMove(state.Error, state.Pending, 5),
					dispatch("b", 1, 5.1), taskMove(state.Pending, state.InProgress, 5.1),
					complete("b", 1, 6), taskMove(state.InProgress, state.Complete, 6),
				}}},
			want: &Report{
				Since: at(0), Until: at(60), Finished: 1, Completed: 1,
				ThroughputPerMinute: 1, SuccessRate: 1, Duration: pct(1, 6, 6, 6),
				Steps: []StepStats{
					{Name: "x", Running: pct(1, 0.5, 0.5, 0.5), QueueWait: pct(1, 0, 0, 0), Attempts: 1, Failures: 1},
					{Name: "a", Running: pct(1, 1, 1, 1), QueueWait: pct(1, 0, 0, 0), Attempts: 1, CriticalPathShare: 1.0 / 6},
					// Ready at 1 (a) held to 5 (the resume): 0.1.
					// Critical path b ← a: a 0–1, b 1–6.
					{Name: "b", Running: pct(1, 0.9, 0.9, 0.9), QueueWait: pct(1, 0.1, 0.1, 0.1), Attempts: 1, CriticalPathShare: 5.0 / 6},
				},
				TopErrors:  []ErrorCount{{Step: "x", Message: "no", Count: 1}},
				Bottleneck: "b", BottleneckShare: 5.0 / 6,
			},
		},
		{
			// b is bypassed at creation (resolved_manually at 0), so d is
			// ready once c completes; the critical path ends at d and goes
			// back through c, the parent that finished last. A step the
			// order does not list (an older version's) comes last.
			name: "bypassed parent and unlisted step", since: 0, until: 60, order: []string{"a", "b", "c", "d"},
			tasks: []*Task{{ID: "p", State: state.Complete, CreatedAt: at(0), FinishedAt: at(7),
				Steps: append(append([]Step{}, diamond...), Step{Name: "old"}),
				Transitions: []Transition{
					{Step: "b", From: state.Pending, To: state.ResolvedManually, At: at(0)},
					dispatch("a", 1, 0), dispatch("old", 1, 0), taskMove(state.Pending, state.InProgress, 0),
					complete("a", 1, 1), complete("old", 1, 1), dispatch("c", 1, 1),
					complete("c", 1, 4), dispatch("d", 1, 4),
					complete("d", 1, 7), taskMove(state.InProgress, state.Complete, 7),
				}}},
			want: &Report{
				Since: at(0), Until: at(60), Finished: 1, Completed: 1,
				ThroughputPerMinute: 1, SuccessRate: 1, Duration: pct(1, 7, 7, 7),
				Steps: []StepStats{
					{Name: "a", Running: pct(1, 1, 1, 1), QueueWait: pct(1, 0, 0, 0), Attempts: 1, CriticalPathShare: 1.0 / 7},
					{Name: "b"},
					{Name: "c", Running: pct(1, 3, 3, 3), QueueWait: pct(1, 0, 0, 0), Attempts: 1, CriticalPathShare: 3.0 / 7},
					{Name: "d", Running: pct(1, 3, 3, 3), QueueWait: pct(1, 0, 0, 0), Attempts: 1, CriticalPathShare: 3.0 / 7},
					{Name: "old", Running: pct(1, 1, 1, 1), QueueWait: pct(1, 0, 0, 0), Attempts: 1},
				},
				TopErrors: []ErrorCount{},
				// c and d tie: the first in step order wins.
				Bottleneck: "c", BottleneckShare: 3.0 / 7,
			},
		},
		{
			// A step resolved by hand before its parent finished has a
			// span that would be negative: it counts as zero, and so does
			// a completed task whose steps all finished at its creation.
			name: "zero-length critical paths", since: 0, until: 60, order: []string{"a", "b"},
			tasks: []*Task{{ID: "z", State: state.Complete, CreatedAt: at(0), FinishedAt: at(0),
				Steps: []Step{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}},
				Transitions: []Transition{
					{Step: "a", From: state.Pending, To: state.ResolvedManually, At: at(0)},
					{Step: "b", From: state.Pending, To: state.ResolvedManually, At: at(0)},
					taskMove(state.Pending, state.InProgress, 0), taskMove(state.InProgress, state.Complete, 0),
				}}},
			want: &Report{
				Since: at(0), Until: at(60), Finished: 1, Completed: 1,
				ThroughputPerMinute: 1, SuccessRate: 1, Duration: pct(1, 0, 0, 0),
				Steps:     []StepStats{{Name: "a"}, {Name: "b"}},
				TopErrors: []ErrorCount{},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acc := New(at(tc.since), at(tc.until), tc.order)
			for _, task := range tc.tasks {
				acc.Add(task)
			}
			got := acc.Report()
			requireReport(t, tc.want, got)
		})
	}
}

// requireReport compares reports, floats within rounding.
func requireReport(t *testing.T, want, got *Report) {
	t.Helper()
	floats := func(r *Report) []float64 {
		out := []float64{r.ThroughputPerMinute, r.SuccessRate, r.ErrorRate, r.CancelRate, r.RetryRate, r.BottleneckShare}
		for _, s := range r.Steps {
			out = append(out, s.CriticalPathShare)
		}
		return out
	}
	require.InDeltaSlice(t, floats(want), floats(got), 1e-9)
	strip := func(r *Report) Report {
		c := *r
		c.ThroughputPerMinute, c.SuccessRate, c.ErrorRate, c.CancelRate, c.RetryRate, c.BottleneckShare = 0, 0, 0, 0, 0, 0
		c.Steps = append([]StepStats{}, r.Steps...)
		for i := range c.Steps {
			c.Steps[i].CriticalPathShare = 0
		}
		return c
	}
	require.Equal(t, strip(want), strip(got))
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ten := make([]time.Duration, 10)
	for i := range ten {
		ten[i] = time.Duration(i+1) * time.Second
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		values []time.Duration
		p      int
		want   time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 50, 7},
		{[]time.Duration{7}, 99, 7},
		{[]time.Duration{1, 2}, 50, 1},
		{[]time.Duration{1, 2}, 95, 2},
		{ten, 50, 5 * time.Second},
		{ten, 95, 10 * time.Second},
		{ten, 90, 9 * time.Second},
		{hundred, 50, 50 * time.Millisecond},
		{hundred, 95, 95 * time.Millisecond},
		{hundred, 99, 99 * time.Millisecond},
		{hundred, 100, 100 * time.Millisecond},
	} {
		require.Equal(t, tc.want, Percentile(tc.values, tc.p), "p%d of %d values", tc.p, len(tc.values))
	}
}

// TestTopErrorsBounded: past MaxTopErrors distinct failures only the most
// frequent are listed, most frequent first, ties in step order then by
// message; a class recorded on any of a failure's attempts is kept.
func TestTopErrorsBounded(t *testing.T) {
	t.Parallel()
	acc := New(at(0), at(60), []string{"a", "b"})
	var trs []Transition
	s := 0.0
	add := func(step, msg, class string, times int) {
		for range times {
			trs = append(trs, dispatch(step, 1, s), fail(step, 1, s+0.5, msg, class, 0))
			s++
		}
	}
	for i := range MaxTopErrors + 2 {
		add("b", fmt.Sprintf("rare %02d", i), "", 1)
	}
	add("b", "common", "", 2)
	add("b", "common", "Late", 1)
	add("a", "tie", "", 2)
	add("b", "tie", "", 2)
	acc.Add(&Task{ID: "e", State: state.Error, CreatedAt: at(0), FinishedAt: at(s),
		Steps: []Step{{Name: "a"}, {Name: "b"}}, Transitions: trs})
	got := acc.Report().TopErrors
	require.Len(t, got, MaxTopErrors)
	require.Equal(t, ErrorCount{Step: "b", Class: "Late", Message: "common", Count: 3}, got[0])
	require.Equal(t, ErrorCount{Step: "a", Message: "tie", Count: 2}, got[1])
	require.Equal(t, ErrorCount{Step: "b", Message: "tie", Count: 2}, got[2])
	for i, e := range got[3:] {
		require.Equal(t, ErrorCount{Step: "b", Message: fmt.Sprintf("rare %02d", i), Count: 1}, e)
	}
}
