// Package coordinator owns task and step state: it validates templates,
// creates tasks, finds the steps that may run, dispatches them to executors
// over gRPC, applies their results exactly once and finalizes tasks. It
// serves tasker.coordinator.v1.CoordinatorService.
package coordinator

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/tasker-go/tasker/store"
)

// Config configures a Coordinator. Store is required; zero values elsewhere
// take the documented defaults.
type Config struct {
	// Store is the source of truth.
	Store store.Store
	// ID names this coordinator in logs and to executors; default random.
	ID string
	// Logger receives structured logs; default slog.Default().
	Logger *slog.Logger
	// Limits bound what callers may send.
	Limits Limits
	// DialOptions are used when dialling executors; default insecure
	// credentials.
	DialOptions []grpc.DialOption
	// ExecutorGrace is how long an executor may be unreachable before its
	// in-flight steps fail their attempt; default 5s.
	ExecutorGrace time.Duration
}

// Limits bound request sizes; zero means the default.
type Limits struct {
	// MaxContextBytes bounds a task context's JSON; default 1 MiB.
	MaxContextBytes int
	// MaxResultBytes bounds one step's results; default 4 MiB.
	MaxResultBytes int
	// MaxSteps bounds steps per template; default 1000.
	MaxSteps int
}

// ErrStopped is returned by calls made after Stop.
var ErrStopped = errors.New("coordinator stopped")

// Coordinator is the engine plus its gRPC service. Create it with New, call
// Start, Register it on a grpc.Server, and Stop it when done.
type Coordinator struct {
	cfg Config
}

// New checks cfg and builds a Coordinator; it does no I/O.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Store == nil {
		return nil, errors.New("coordinator: Config.Store is required")
	}
	return &Coordinator{cfg: cfg}, nil
}

// Start resumes every unfinished task found in the store and starts the
// background loops. It returns once resumption has been scheduled.
func (c *Coordinator) Start(ctx context.Context) error { return nil }

// Register adds the CoordinatorService to s.
func (c *Coordinator) Register(s grpc.ServiceRegistrar) {}

// Stop stops dispatching, waits for in-flight results until ctx ends, and
// closes executor streams. It does not close the store.
func (c *Coordinator) Stop(ctx context.Context) error { return nil }
