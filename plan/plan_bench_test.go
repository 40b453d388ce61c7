package plan

import (
	"fmt"
	"testing"
	"time"

	"github.com/tasker-go/tasker/state"
)

// benchTask is a snapshot of a task part-way through: the first third of
// its steps complete, one in twenty in flight, one errored step waiting for its
// retry, the rest pending. The steps form a binary tree (step i depends on
// (i-1)/2) with an extra join parent on every fourth step, so the frontier
// is wide and readiness checks walk real parent lists.
func benchTask(n int, now time.Time) []Step {
	steps := make([]Step, n)
	for i := range steps {
		s := &steps[i]
		s.State, s.Retryable, s.MaxAttempts = state.Pending, true, 3
		if i > 0 {
			s.Parents = append(s.Parents, (i-1)/2)
		}
		if i%4 == 3 {
			s.Parents = append(s.Parents, i-2)
		}
		third, running := n/3, max(n/20, 1)
		switch {
		case i < third:
			s.State, s.Attempts = state.Complete, 1
		case i < third+running:
			s.State, s.Attempts, s.InFlight = state.InProgress, 1, true
		case i == third+running:
			s.State, s.Attempts, s.NextRetryAt = state.Error, 1, now.Add(time.Second)
		}
	}
	return steps
}

func BenchmarkReady(b *testing.B) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, parents := range []int{1, 4, 100} {
		b.Run(fmt.Sprintf("parents=%d", parents), func(b *testing.B) {
			// The last step waits on every other one, all complete: the
			// worst case, since Ready stops at the first unsatisfied parent.
			steps := make([]Step, parents+1)
			for i := range parents {
				steps[i] = Step{State: state.Complete}
				steps[parents].Parents = append(steps[parents].Parents, i)
			}
			steps[parents].State = state.Pending
			if !Ready(steps, parents, now) {
				b.Fatal("step should be ready")
			}
			for b.Loop() {
				Ready(steps, parents, now)
			}
		})
	}
}

// BenchmarkFanIn checks a join of n parents after each of its parents
// completes, in the order they are listed, as the coordinator does when
// their results come in: the cost per op is a whole fan-in's checks.
func BenchmarkFanIn(b *testing.B) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("parents=%d", n), func(b *testing.B) {
			steps := make([]Step, n+1)
			steps[n].State = state.Pending
			for i := range n {
				steps[n].Parents = append(steps[n].Parents, i)
			}
			for b.Loop() {
				for i := range n {
					steps[i].State = state.InProgress
				}
				for i := range n {
					steps[i].State = state.Complete
					if Ready(steps, n, now) != (i == n-1) {
						b.Fatalf("join ready after %d of %d parents", i+1, n)
					}
				}
			}
		})
	}
}

func BenchmarkEvaluate(b *testing.B) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, size := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			steps := benchTask(size, now)
			if v := Evaluate(steps, now); v.Outcome != Continue || len(v.Ready) == 0 {
				b.Fatalf("unexpected verdict %+v", v)
			}
			b.ReportAllocs()
			for b.Loop() {
				Evaluate(steps, now)
			}
		})
	}
}

func BenchmarkRetryDelay(b *testing.B) {
	policy := Backoff{Initial: 2 * time.Second, Multiplier: 2, Max: 30 * time.Second}
	attempts := 0
	for b.Loop() {
		attempts = attempts%6 + 1
		RetryDelay(policy, attempts, 0, 0.5)
	}
}
