package storetest

import (
	"context"
	"encoding/json"
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
			server := startServerCPU(b, f.store)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := f.store.TaskCreate(ctx, f.taskParams("linear", linearSteps...)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			server.report(b)
		})
	})

	// Workflow is the coordinator's write pattern for a fenced four-step
	// chain, the bench command's linear4: each op is one of the task's
	// writes in turn (create; start it with its first step; complete a step
	// and start the next, three times; complete the last step and the
	// task), so an op averages one step's worth of writes.
	b.Run("Workflow", func(b *testing.B) {
		f := setup(b)
		lease, err := f.store.LeaseAcquire(ctx, &store.LeaseAcquireParams{
			CoordinatorID: "bench", TTL: benchLeaseTTL, Now: f.now(),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetParallelism(benchWriters * 4)
		server := startServerCPU(b, f.store)
		b.ResetTimer()
		cpu := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			w := &workflow{f: f, lease: lease}
			for pb.Next() {
				if err := w.next(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		// What the coordinator pays per step is CPU, not the wall time
		// the fsyncs set, so report it beside ns/op.
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		server.report(b)
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

// ServerCPUReader is implemented by a test store whose database server
// does the store's writes in a process of its own on this machine (one
// PostgreSQL backend): the CPU time that process has used. The Workflow
// benchmark reports it per op beside the client's.
type ServerCPUReader interface {
	ServerCPU(tb testing.TB) time.Duration
}

// serverCPU measures a ServerCPUReader's CPU over a benchmark.
type serverCPU struct {
	reader ServerCPUReader
	start  time.Duration
}

// startServerCPU starts measuring st's server, if it can be measured.
func startServerCPU(b *testing.B, st store.Store) serverCPU {
	r, ok := st.(ServerCPUReader)
	if !ok {
		return serverCPU{}
	}
	return serverCPU{reader: r, start: r.ServerCPU(b)}
}

// report adds the server's CPU per op to b's results.
func (s serverCPU) report(b *testing.B) {
	if s.reader != nil {
		b.ReportMetric(float64(s.reader.ServerCPU(b)-s.start)/float64(b.N), "server-cpu-ns/op")
	}
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

// benchLeaseTTL outlives any benchmark's clock: the fixture's clock moves a
// second per write.
const benchLeaseTTL = 100 * 365 * 24 * time.Hour

var workflowSteps = []string{"fetch", "transform", "store", "notify"}

// workflow drives one fenced four-step task after another through the
// writes a coordinator makes for it.
type workflow struct {
	f     *fixture
	lease *store.Lease
	task  *store.TaskCreateParams
	// done counts the task's writes so far; 0 means the next write
	// creates a task.
	done int
}

var workflowResults = json.RawMessage(`{"rows":128,"checksum":"9f86d081884c7d659a2feaa0c55ad015"}`)

func (w *workflow) next() error {
	f := w.f
	if w.done == 0 {
		w.task = f.taskParams("workflow", workflowSteps...)
		w.task.Task.OwnerToken = w.lease.Token
		if _, _, err := f.store.TaskCreate(f.ctx, w.task); err != nil {
			return err
		}
		w.done++
		return nil
	}
	steps := w.task.Steps
	p := &store.TaskAdvanceParams{TaskID: w.task.Task.ID, Lease: w.lease, At: f.now()}
	i := w.done - 1 // the step this write starts; the one before completes
	if i == 0 {
		p.Task = &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "started"}
	} else {
		p.Steps = append(p.Steps, &store.StepChange{
			StepID: steps[i-1].ID, StepName: steps[i-1].Name, From: state.InProgress, To: state.Complete,
			ExpectAttempts: 1, Attempts: 1, Results: workflowResults, Reason: "succeeded",
		})
	}
	if i < len(steps) {
		p.Steps = append(p.Steps, &store.StepChange{
			StepID: steps[i].ID, StepName: steps[i].Name, From: state.Pending, To: state.InProgress,
			ExpectAttempts: 0, Attempts: 1, Reason: "dispatched",
		})
		w.done++
	} else {
		p.Task = &store.TaskChange{From: state.InProgress, To: state.Complete, Reason: "all steps complete"}
		w.done = 0
	}
	_, err := f.store.TaskAdvance(f.ctx, p)
	return err
}
