// Package coordinator owns task and step state: it validates templates,
// creates tasks, finds the steps that may run, dispatches them to executors
// over gRPC, applies their results exactly once and finalizes tasks. It
// serves tasker.coordinator.v1.CoordinatorService.
package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tasker-go/tasker/auth"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"

	"github.com/tasker-go/tasker/store"
)

// Config configures a Coordinator. Store is required; zero values elsewhere
// take the documented defaults.
type Config struct {
	// Store is the source of truth.
	Store store.Store
	// Address is where peer coordinators reach this one's gRPC API
	// (host:port). It is stored with the lease, so a request about a task
	// this coordinator owns that reaches another coordinator is forwarded
	// here. Empty: such requests are refused with Unavailable naming this
	// coordinator.
	Address string
	// PeerDialOptions are used when forwarding requests to the coordinator
	// that owns a task; default insecure credentials. They carry transport
	// security only: the caller's own token travels with the request.
	PeerDialOptions []grpc.DialOption
	// ID names this coordinator in logs, to executors and in its lease;
	// default random. Keep it stable across restarts (the CLI uses host and
	// listen address), so a restarted coordinator takes its own tasks back at
	// once instead of waiting for its old lease to expire.
	ID string
	// Logger receives structured logs; default slog.Default().
	Logger *slog.Logger
	// Limits bound what callers may send.
	Limits Limits
	// DialOptions are used when dialling executors; default insecure
	// credentials.
	DialOptions []grpc.DialOption
	// ExecutorGrace is how long an executor may be unreachable before its
	// in-flight steps fail their attempt; default 5s. Longer rides out
	// network blips without re-running work; shorter recovers sooner.
	ExecutorGrace time.Duration
	// Registerer receives the coordinator's Prometheus metrics; default a
	// private registry (metrics are kept but not exported).
	Registerer prometheus.Registerer
	// TracerProvider traces tasks and step attempts; default a no-op
	// provider (tracing off).
	TracerProvider trace.TracerProvider
	// LeaseTTL is how long this coordinator's ownership of its tasks lasts
	// without renewal (renewed every third of it); default 10s. When the
	// coordinator dies, others take its tasks over within about this long.
	LeaseTTL time.Duration
	// ExecutorLiveness is how long an executor's stream may stay silent
	// (executors heartbeat every 5s by default) before it counts as lost;
	// default 15s.
	ExecutorLiveness time.Duration
	// Security says who may call the coordinator (tokens, executor client
	// certificates); the zero value lets every caller do anything. See
	// Security.
	Security Security
	// PriorityAging is how long a step waiting for an executor slot waits
	// to gain one priority level; default 30s. Higher priority goes first,
	// but a step of low priority that has waited long enough goes before
	// newer ones of higher priority: none waits for ever.
	PriorityAging time.Duration
	// EventRetention is how long the history of finished tasks is kept:
	// a background loop deletes the transitions of tasks that finished
	// longer ago (each keeps its last one), and SubscribeEvents refuses
	// cursors older than what was deleted. Zero keeps everything forever,
	// so a library user never loses history unasked; the CLI defaults to
	// seven days.
	EventRetention time.Duration
	// TaskRetention is how long finished tasks themselves are kept: the
	// same loop deletes tasks that finished (complete, cancelled or
	// resolved_manually) longer ago, with their steps, history and
	// signals, once the event log has been pruned past them. Zero (the
	// default, and the CLI's) keeps every task; otherwise it needs an
	// EventRetention, no longer than it.
	TaskRetention time.Duration
	// ScheduleReload is how often the scheduler re-reads the stored
	// schedules when no firing is due sooner; default 5s. It bounds how
	// long a schedule created, paused or deleted through another
	// coordinator takes to be seen here (changes made here are seen at
	// once). Shorter costs one small read per interval.
	ScheduleReload time.Duration

	// childRecheck, when set, replaces how often child steps and child
	// tasks look at each other (10 s), for tests (export_test.go).
	childRecheck time.Duration
}

// Limits bound request sizes; zero means the default.
type Limits struct {
	// MaxContextBytes bounds a task context's JSON; default 1 MiB.
	MaxContextBytes int
	// MaxResultBytes bounds one step's results; default 4 MiB.
	MaxResultBytes int
	// MaxSteps bounds steps per template; default 10,000 (a fan-out of a
	// thousand or more parallel steps is a normal shape).
	MaxSteps int
	// MaxRequestBytes bounds any one gRPC message the coordinator receives
	// from API callers; default 8 MiB. gRPC refuses larger ones with
	// ResourceExhausted before they are read.
	MaxRequestBytes int
}

// ErrStopped is returned by calls made after Stop.
var ErrStopped = errors.New("coordinator stopped")

// Coordinator is the engine plus its gRPC service. Create it with New, call
// Start, Register it on a grpc.Server, and Stop it when done.
type Coordinator struct {
	cfg      Config
	engine   *engine
	cancel   context.CancelFunc
	stopping chan struct{}
	stopOnce sync.Once
	// guard enforces cfg.Security through ServerOptions; nil when off.
	guard *auth.Guard
	// health answers grpc.health.v1 without a token; it follows Ready
	// (keepHealth) and turns NOT_SERVING for good when Stop begins, so load
	// balancers drain the coordinator.
	health *health.Server
	// peers forwards requests about tasks other coordinators own.
	peers *peers
	// sched fires cron schedules (schedules.go).
	sched *scheduler
}

// New checks cfg, fills in defaults and builds a Coordinator; it does no I/O.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Store == nil {
		return nil, errors.New("coordinator: Config.Store is required")
	}
	if cfg.ID == "" {
		cfg.ID = "coordinator-" + uuid.NewString()[:8]
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cfg.Limits = cfg.Limits.withDefaults()
	// Results over MaxResultBytes are refused as a step failure; the stream
	// itself accepts a generous margin more, so an oversized result fails
	// its step instead of breaking the executor's stream.
	cfg.DialOptions = append(slices.Clone(cfg.DialOptions),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(max(4*cfg.Limits.MaxResultBytes, 64<<20))))
	if cfg.PeerDialOptions == nil {
		cfg.PeerDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	// A forwarded answer is a whole task, as large as any response.
	cfg.PeerDialOptions = append(slices.Clone(cfg.PeerDialOptions),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(max(4*cfg.Limits.MaxResultBytes, 64<<20))))
	if cfg.ExecutorGrace <= 0 {
		cfg.ExecutorGrace = 5 * time.Second
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.PriorityAging <= 0 {
		cfg.PriorityAging = 30 * time.Second
	}
	if cfg.ExecutorLiveness <= 0 {
		cfg.ExecutorLiveness = 15 * time.Second
	}
	if cfg.ScheduleReload <= 0 {
		cfg.ScheduleReload = defaultScheduleReload
	}
	if cfg.EventRetention < 0 {
		return nil, fmt.Errorf("coordinator: Config.EventRetention %s is negative (zero keeps events forever)", cfg.EventRetention)
	}
	if err := checkTaskRetention(cfg.TaskRetention, cfg.EventRetention); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	guard, err := newGuard(cfg.Security, cfg.Logger.With("coordinator_id", cfg.ID))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{cfg: cfg, cancel: cancel, stopping: make(chan struct{}), guard: guard, health: health.NewServer(),
		peers: newPeers(cfg.ID, cfg.PeerDialOptions)}
	c.health.SetServingStatus(coordinatorv1.CoordinatorService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	e := &engine{
		ctx: ctx, store: cfg.Store, log: cfg.Logger.With("coordinator_id", cfg.ID), limits: cfg.Limits,
		templates: newTemplateBook(cfg.Store, template.Limits{MaxSteps: cfg.Limits.MaxSteps}),
		hub:       newHub(), grace: cfg.ExecutorGrace, now: func() time.Time { return time.Now().UTC() },
		tasks: map[string]*taskRun{}, id: cfg.ID, address: cfg.Address, leaseTTL: cfg.LeaseTTL, repairWait: repairMinWait,
		childRecheck: cmp.Or(cfg.childRecheck, childRecheck),
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	e.trace = newTracing(cfg.TracerProvider)
	e.events = newEventLog(ctx, cfg.Store)
	e.pool = newPool(e.log, cfg.ID, cfg.DialOptions, cfg.ExecutorGrace, cfg.ExecutorLiveness, e, &e.bg)
	e.pool.aging = cfg.PriorityAging
	e.admission = newAdmissionWaits(cfg.PriorityAging, e.now)
	e.cancelAnywhere = c.cancelAnywhere
	e.notifyElsewhere = c.notifyElsewhere
	e.forwardResult = c.forwardResult
	e.leaseCheck = make(chan struct{}, 1)
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	e.metrics = newMetrics(cfg.Registerer, e)
	e.pool.messages = e.metrics.streamMessages
	c.engine = e
	c.sched = newScheduler(e, c.peers, cfg.ScheduleReload, cfg.Registerer)
	return c, nil
}

func (l Limits) withDefaults() Limits {
	if l.MaxContextBytes <= 0 {
		l.MaxContextBytes = 1 << 20
	}
	if l.MaxResultBytes <= 0 {
		l.MaxResultBytes = 4 << 20
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = template.DefaultMaxSteps
	}
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = 8 << 20
	}
	return l
}

// ID is the coordinator's name.
func (c *Coordinator) ID() string { return c.cfg.ID }

// Start takes a lease in the store and continues every unfinished task no
// live coordinator owns: on one box, everything the previous run left.
// Steps that were in flight keep their attempt for the executor grace
// period, so late results are still accepted. It then keeps the lease
// alive and takes over the tasks of coordinators that die.
func (c *Coordinator) Start(ctx context.Context) error {
	e := c.engine
	if err := e.acquireLease(ctx); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	n, err := e.claim(ctx)
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	if n > 0 {
		e.log.Info("continued unfinished tasks", "tasks", n)
	}
	e.bg.goFn(e.keepLease)
	if n, ok := e.store.(store.AdmissionNotifier); ok {
		e.bg.goFn(func() { _ = n.AdmissionListen(e.ctx, e.id, e.keysFreedElsewhere) })
	}
	e.bg.goFn(func() { c.sched.run(e.ctx) })
	e.bg.goFn(c.keepHealth)
	if r := c.cfg.EventRetention; r > 0 {
		e.bg.goFn(func() { e.keepRetention(r, c.cfg.TaskRetention) })
	}
	return nil
}

// cancelAnywhere cancels a task on whichever coordinator owns it.
func (c *Coordinator) cancelAnywhere(ctx context.Context, id, reason string) error {
	_, err := c.engine.cancelTask(ctx, id, reason)
	var owned *store.OwnedError
	if errors.As(err, &owned) {
		_, err = forward(ctx, c.peers, owned, func(ctx context.Context, cl coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.CancelTaskResponse, error) {
			return cl.CancelTask(ctx, &coordinatorv1.CancelTaskRequest{Id: id, Reason: reason})
		})
	}
	return err
}

// Register adds the CoordinatorService and the grpc.health.v1 service to s.
func (c *Coordinator) Register(s grpc.ServiceRegistrar) {
	coordinatorv1.RegisterCoordinatorServiceServer(s, &server{c: c, meta: newMetadataCache()})
	healthpb.RegisterHealthServer(s, c.health)
}

// ServerOptions are the grpc.Server options the coordinator needs, such as
// its request size limit and, with Config.Security, the interceptors that
// authenticate and authorize callers; pass them to grpc.NewServer.
func (c *Coordinator) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(c.cfg.Limits.MaxRequestBytes)}
	if c.guard != nil {
		opts = append(opts, c.guard.ServerOptions()...)
	}
	return opts
}

// Stop shuts the coordinator down gracefully: it stops dispatching and
// creating tasks, lets results of attempts in flight land until ctx ends,
// then ends watches, closes executor streams and stops timers. Steps left
// ready or in flight are picked up by the next start from the store. When it
// returns, no goroutine of the coordinator is left running, so the store
// may be closed; it does not close the store itself.
func (c *Coordinator) Stop(ctx context.Context) error {
	var err error
	c.stopOnce.Do(func() {
		c.health.Shutdown()
		err = c.engine.drain(ctx)
		close(c.stopping)
		// Cancelling first ends every loop and wait of the engine, so
		// stop can then wait for all its goroutines.
		c.cancel()
		c.engine.stop()
		c.peers.close()
		c.engine.releaseLease()
	})
	return err
}
