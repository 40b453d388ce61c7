package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// benchWriters multiplies GOMAXPROCS in the parallel benchmarks: a
// coordinator writes for many tasks at once, and group commit only shows
// with more writers than CPUs.
const benchWriters = 16

// Benchmark measures the two writes on the coordinator's hot path, each
// alone (serial: latency of one commit) and under load (parallel: what group
// commit buys). Sub-benchmarks are named TaskCreate/serial,
// TaskCreate/parallel, TaskAdvance/serial and TaskAdvance/parallel, so
// benchstat can compare drivers or commits. Each sub-benchmark gets a
// database of its own from newDatabase.
func Benchmark(ctx context.Context, b *testing.B, newDatabase NewDatabase) {
	setup := func(b *testing.B) *fixture {
		open := newDatabase(b)
		return &fixture{ctx: ctx, store: open(b), open: open, ns: "bench"}
	}

	b.Run("TaskCreate", func(b *testing.B) {
		b.Run("serial", func(b *testing.B) {
			f := setup(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := f.store.TaskCreate(ctx, f.taskParams("linear", linearSteps...)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel", func(b *testing.B) {
			f := setup(b)
			b.ReportAllocs()
			b.SetParallelism(benchWriters)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := f.store.TaskCreate(ctx, f.taskParams("linear", linearSteps...)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	})

	b.Run("TaskAdvance", func(b *testing.B) {
		b.Run("serial", func(b *testing.B) {
			f := setup(b)
			c, err := f.newCycler()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.advance(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel", func(b *testing.B) {
			f := setup(b)
			b.ReportAllocs()
			b.SetParallelism(benchWriters)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				// Each writer owns a task, as each task has one owner in the
				// coordinator; creating it is a small one-off cost.
				c, err := f.newCycler()
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if err := c.advance(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	})
}

// cycler moves one step round pending → in_progress → error → pending, one
// TaskAdvance per call, the way a flaky step is retried.
type cycler struct {
	f        *fixture
	taskID   string
	step     *store.Step
	state    state.State
	attempts int
}

var benchError = &store.StepError{Message: "upstream timeout", Class: "Timeout", Retryable: true}

func (f *fixture) newCycler() (*cycler, error) {
	p := f.taskParams("linear", "flaky")
	if _, _, err := f.store.TaskCreate(f.ctx, p); err != nil {
		return nil, err
	}
	return &cycler{f: f, taskID: p.Task.ID, step: p.Steps[0], state: state.Pending}, nil
}

func (c *cycler) advance() error {
	at := c.f.now()
	change := &store.StepChange{
		StepID: c.step.ID, StepName: c.step.Name, From: c.state,
		ExpectAttempts: c.attempts, Attempts: c.attempts,
	}
	switch c.state {
	case state.Pending:
		change.To = state.InProgress
		change.Attempts++
	case state.InProgress:
		change.To = state.Error
		change.Error = benchError
		change.NextRetryAt = at.Add(2 * time.Second)
	default:
		change.To = state.Pending
	}
	if _, err := c.f.store.TaskAdvance(c.f.ctx, &store.TaskAdvanceParams{
		TaskID: c.taskID, Steps: []*store.StepChange{change}, At: at,
	}); err != nil {
		return err
	}
	c.state, c.attempts = change.To, change.Attempts
	return nil
}
