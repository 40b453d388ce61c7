package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tasker-go/tasker/executor"
)

// fleet is where the executors of a run live and what they recorded: inside
// the load generator's process (inProcessFleet) or each in a child process
// of its own (processFleet), which is what lets their CPU be measured apart
// from the load generator's.
type fleet interface {
	// counts returns the handler invocations and the distinct steps they
	// ran, over every executor. Without exact, a step that ran on two
	// executor processes may count as two distinct steps (cheap enough for
	// progress lines); with it, step ids are compared across processes.
	counts(ctx context.Context, exact bool) (invocations, steps int64, err error)
	// receivedAt looks up when each attempt first reached a handler; an
	// attempt no executor ran is absent from the result.
	receivedAt(ctx context.Context, keys []attemptKey) (map[attemptKey]time.Time, error)
	// pids are the executors' own processes; nil when they share the load
	// generator's.
	pids() []int
	// startProfile and stopProfile capture a CPU profile of each executor
	// process; stopProfile returns one profile per pid, in pids() order.
	startProfile(ctx context.Context) error
	stopProfile(ctx context.Context) ([][]byte, error)
	// stop stops every executor and waits for it.
	stop() error
}

// inProcessFleet runs the executors as goroutines of this process, all
// hosting one Recorder.
type inProcessFleet struct {
	rec    *Recorder
	cancel context.CancelFunc
	done   []<-chan error
}

// startInProcessFleet starts cfg.Executors executors hosting rec, each
// registered with every coordinator in addrs.
func startInProcessFleet(ctx context.Context, cfg Config, rec *Recorder, ids []string, addrs []string) (*inProcessFleet, error) {
	exCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &inProcessFleet{rec: rec, cancel: cancel}
	for i, id := range ids {
		ex, err := executor.New(executor.Config{
			ID:           id,
			Capacity:     cfg.ExecutorCapacity,
			Coordinator:  addrs[0],
			Coordinators: addrs[1:],
			Logger:       cfg.Logger,
			// Empty options mean the SDK's plaintext defaults.
			DialOptions:   cfg.ExecutorDialOptions,
			ServerOptions: cfg.ExecutorServerOptions,
			// Nothing runs long, so shutdown need not wait as long as for
			// real handlers.
			ShutdownTimeout: 5 * time.Second,
			DeliveryTimeout: 5 * time.Second,
		})
		if err == nil {
			err = ex.Handle(NoopHandler, rec.Handle)
		}
		if err != nil {
			return f, fmt.Errorf("executor %d: %w", i, err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return f, fmt.Errorf("executor %d: listen: %w", i, err)
		}
		d := make(chan error, 1)
		go func() { d <- ex.Serve(exCtx, lis) }()
		f.done = append(f.done, d)
	}
	return f, nil
}

// One recorder serves every executor here, so its counts are exact.
func (f *inProcessFleet) counts(context.Context, bool) (int64, int64, error) {
	inv, steps := f.rec.Counts()
	return inv, steps, nil
}

func (f *inProcessFleet) receivedAt(_ context.Context, keys []attemptKey) (map[attemptKey]time.Time, error) {
	out := make(map[attemptKey]time.Time, len(keys))
	for _, k := range keys {
		if at, ok := f.rec.ReceivedAt(k.stepID, k.attempt); ok {
			out[k] = at
		}
	}
	return out, nil
}

func (f *inProcessFleet) pids() []int { return nil }

// The executors' CPU is in the load generator's profile.
func (f *inProcessFleet) startProfile(context.Context) error { return nil }

func (f *inProcessFleet) stopProfile(context.Context) ([][]byte, error) { return nil, nil }

func (f *inProcessFleet) stop() error {
	f.cancel()
	var errs []error
	for _, d := range f.done {
		if err := <-d; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
