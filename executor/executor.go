// Package executor is the Go SDK for writing Tasker executors: a gRPC server
// that hosts step handlers, registers itself with a coordinator and answers
// every step the coordinator streams to it with exactly one result.
//
// A minimal executor:
//
//	e, _ := executor.New(executor.Config{Coordinator: "coordinator:7233"})
//	_ = e.Handle("charge_card", chargeCard)
//	lis, _ := net.Listen("tcp", ":7300")
//	_ = e.Serve(ctx, lis) // returns after a graceful shutdown when ctx ends
//
// Results are never dropped silently: a result that finishes after its
// stream broke is delivered through the coordinator's ReportStepResult RPC or
// at the start of the next stream. The coordinator applies a result only for
// the step's current attempt, so a second delivery is harmless.
package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// SDKVersion is reported by Describe so coordinators and operators can tell
// which SDK build an executor runs.
const SDKVersion = "0.1.0"

// ProtocolVersion is the version of tasker.executor.v1 this SDK speaks.
const ProtocolVersion = 1

// Capabilities lists the optional protocol features this SDK supports, as
// reported by Describe.
func Capabilities() []string {
	return []string{"cancel", "heartbeat", "progress", "report"}
}

var (
	// ErrInvalidHandler is returned by Handle for an empty name or nil func.
	ErrInvalidHandler = errors.New("invalid handler")
	// ErrDuplicateHandler is returned by Handle when the name is taken.
	ErrDuplicateHandler = errors.New("handler already registered")
	// ErrStarted is returned by Handle and Serve once Serve has been called:
	// the handler set is what Describe promised the coordinator, so it is
	// fixed from then on.
	ErrStarted = errors.New("executor already started")
)

// Bounds on the shutdown sequence beyond the configurable ones. They only
// matter when something misbehaves (a handler ignoring its ctx, a client
// never closing), so they are generous but finite.
const (
	// cancelGrace is how long handlers get to return after their ctx is
	// cancelled at shutdown before they are abandoned.
	cancelGrace = 5 * time.Second
	// stopGrace bounds GracefulStop of the gRPC server before Stop.
	stopGrace = 5 * time.Second
)

// Executor hosts handlers and serves tasker.executor.v1.ExecutorService.
// Create it with New, add handlers with Handle, then call Serve once.
type Executor struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	// tracer and propagator continue the coordinator's traces in handlers.
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	// tracingOff is set for the no-op provider, whose spans would record
	// nothing: a handler then runs under the coordinator's span context
	// alone, without a span of its own to build for every run.
	tracingOff bool

	// closing is closed at the end of shutdown to end every Execute stream.
	closing chan struct{}
	// redeliverWake and registerWake nudge the background loops; capacity 1
	// so a nudge is never lost and never blocks.
	redeliverWake chan struct{}
	registerWake  chan struct{}
	// recvWG tracks the goroutines reading Execute streams.
	recvWG sync.WaitGroup
	// work hands a run to a handler goroutine that finished its last run
	// and waits for another (see spawn).
	work chan *run

	// mu guards every field below.
	mu sync.Mutex
	// handlers is fixed once started is true.
	handlers map[string]HandlerFunc
	started  bool
	// baseCtx is the parent of every handler ctx: Serve's ctx without its
	// cancellation, so handlers keep its values but stop on our terms.
	baseCtx context.Context
	// shuttingDown refuses new steps; closed refuses new streams.
	shuttingDown bool
	closed       bool
	// admitted holds every attempt accepted and not yet answered: active
	// of them run their handler, the others wait in queue (oldest first)
	// for a slot. active never exceeds Capacity.
	admitted map[runKey]*run
	active   int
	queue    []*run
	// runsIdle is closed while admitted is empty.
	runsIdle    chan struct{}
	sessions    map[*session]struct{}
	nextSession uint64
	// health is the grpc.health.v1 server of Serve, nil before it; it
	// follows Ready as sessions open and close (setHealthLocked).
	health *health.Server
	// pending holds results whose stream is gone, oldest first; entries may
	// already be done (delivered another way) until the next compaction.
	pending []*delivery
	// undelivered counts results created but not yet delivered; drained is
	// closed while it is zero.
	undelivered int
	drained     chan struct{}

	// hooks let tests in this package wait for internal events; set before
	// Serve and never changed after.
	hooks hooks
}

// hooks are called, when set, as the events they name happen.
type hooks struct {
	// sessionClosed runs once a stream is forgotten and its unsent results
	// were made pending, with the id of the coordinator that opened it.
	sessionClosed func(coordinatorID string)
	// runStarted runs, under e.mu, each time a handler takes a slot, with
	// the number of handlers running then.
	runStarted func(active int)
	// stepQueued runs, under e.mu, each time a step waits for a slot.
	stepQueued func()
	// workerWaiting runs each time a handler goroutine has finished a run
	// and is about to wait for the next (see spawn).
	workerWaiting func()
}

// New validates cfg and returns an Executor with no handlers.
func New(cfg Config) (*Executor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	idle := make(chan struct{})
	close(idle)
	drained := make(chan struct{})
	close(drained)
	e := &Executor{
		cfg:           cfg,
		log:           cfg.Logger.With("executor_id", cfg.ID),
		tracer:        cfg.TracerProvider.Tracer("github.com/tasker-go/tasker/executor"),
		tracingOff:    isNoopTracing(cfg.TracerProvider),
		propagator:    propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		closing:       make(chan struct{}),
		work:          make(chan *run),
		redeliverWake: make(chan struct{}, 1),
		registerWake:  make(chan struct{}, 1),
		handlers:      make(map[string]HandlerFunc),
		admitted:      make(map[runKey]*run),
		runsIdle:      idle,
		sessions:      make(map[*session]struct{}),
		drained:       drained,
	}
	e.metrics = newMetrics(cfg.Registerer, e)
	return e, nil
}

// ID is the executor id reported to coordinators and in every result.
func (e *Executor) ID() string { return e.cfg.ID }

// Handle registers h under name. It must be called before Serve, because
// Describe tells the coordinator the handler set once.
func (e *Executor) Handle(name string, h HandlerFunc) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidHandler)
	}
	if h == nil {
		return fmt.Errorf("%w: nil func for %q", ErrInvalidHandler, name)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return fmt.Errorf("handle %q: %w", name, ErrStarted)
	}
	if _, ok := e.handlers[name]; ok {
		return fmt.Errorf("handle %q: %w", name, ErrDuplicateHandler)
	}
	e.handlers[name] = h
	return nil
}

// handlerNames returns the registered names, sorted for stable output.
func (e *Executor) handlerNames() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	names := make([]string, 0, len(e.handlers))
	for name := range e.handlers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Serve serves on lis until ctx ends, registering with the coordinator when
// one is configured, then shuts down gracefully: it stops registering,
// refuses new steps, waits up to ShutdownTimeout for running handlers
// (cancelling them after that), delivers their results and stops the gRPC
// server. It returns nil after a shutdown caused by ctx, or the server's
// error if serving failed. Serve takes ownership of lis and may be called
// once.
func (e *Executor) Serve(ctx context.Context, lis net.Listener) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		_ = lis.Close()
		return fmt.Errorf("serve: %w", ErrStarted)
	}
	e.started = true
	e.baseCtx = context.WithoutCancel(ctx)
	e.mu.Unlock()

	targets := e.cfg.coordinators()
	coords := make([]coordinatorv1.CoordinatorServiceClient, 0, len(targets))
	for _, target := range targets {
		conn, err := grpc.NewClient(target, e.cfg.DialOptions...)
		if err != nil {
			_ = lis.Close()
			return fmt.Errorf("dial coordinator %s: %w", target, err)
		}
		defer func() { _ = conn.Close() }()
		coords = append(coords, coordinatorv1.NewCoordinatorServiceClient(conn))
	}

	// Last, so Describe reports the limit that holds.
	serverOpts := append(slices.Clone(e.cfg.ServerOptions), grpc.MaxRecvMsgSize(e.cfg.MaxReceiveBytes))
	if e.cfg.Secret != "" {
		// First in the chain, so nothing runs for a caller without it.
		serverOpts = append(newSecretGuard(e.cfg.Secret).serverOptions(), serverOpts...)
	}
	srv := grpc.NewServer(serverOpts...)
	executorv1.RegisterExecutorServiceServer(srv, &service{e: e})
	// Reflection lets grpcurl and ghz call the executor without its proto files.
	reflection.Register(srv)
	// Health answers probes that hold no credentials. It follows Ready:
	// SERVING while a coordinator has an Execute stream open here (so a
	// rollout waits for the coordinators to take up a new executor), and
	// NOT_SERVING for good as shutdown begins, so load balancers stop
	// routing here.
	hs := health.NewServer()
	e.mu.Lock()
	e.health = hs
	e.setHealthLocked()
	e.mu.Unlock()
	healthpb.RegisterHealthServer(srv, hs)
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(lis) }()

	addr := e.cfg.AdvertiseAddress
	if addr == "" {
		addr = lis.Addr().String()
	}
	e.log.Info("executor serving", "address", lis.Addr().String(), "advertise", addr,
		"coordinators", targets, "handlers", e.handlerNames(), "capacity", e.cfg.Capacity)

	loopCtx := context.WithoutCancel(ctx)
	registerCtx, stopRegister := context.WithCancel(loopCtx)
	defer stopRegister()
	deliverCtx, stopDeliver := context.WithCancel(loopCtx)
	defer stopDeliver()
	var loops sync.WaitGroup
	for i, coord := range coords {
		loops.Go(func() { e.registerLoop(registerCtx, coord, targets[i], addr) })
	}
	loops.Go(func() { e.redeliverLoop(deliverCtx, coords) })

	var serveErr error
	select {
	case <-ctx.Done():
		e.log.Info("executor shutting down", "cause", context.Cause(ctx))
	case err := <-serveDone:
		serveDone = nil
		serveErr = fmt.Errorf("serve executor: %w", err)
		e.log.Error("executor server failed, shutting down", "err", err)
	}

	hs.Shutdown()
	stopRegister()
	e.drainRuns()
	e.awaitDelivery()
	stopDeliver()
	loops.Wait()
	e.endSessions()
	e.stopServer(srv)
	if serveDone != nil {
		if err := <-serveDone; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			serveErr = fmt.Errorf("serve executor: %w", err)
		}
	}
	e.recvWG.Wait()
	e.log.Info("executor stopped")
	return serveErr
}

// drainRuns refuses new steps, answers those still waiting for a slot and
// waits for running handlers: up to ShutdownTimeout on their own, then
// cancelled, then abandoned with an error log if they still ignore their
// ctx.
func (e *Executor) drainRuns() {
	e.mu.Lock()
	e.shuttingDown = true
	idle := e.runsIdle
	n := e.active
	waiting := e.queue
	e.queue = nil
	e.mu.Unlock()
	for _, r := range waiting {
		// Never started: answered at once as retryable, so the coordinator
		// sends the step elsewhere instead of waiting for this shutdown.
		r.cancel(&cancelError{shutdown: true})
		e.spawn(r)
	}
	if n > 0 {
		e.log.Info("waiting for running handlers", "running", n, "timeout", e.cfg.ShutdownTimeout)
	}
	if waitClosed(idle, e.cfg.ShutdownTimeout) {
		return
	}
	e.mu.Lock()
	runs := make([]*run, 0, len(e.admitted))
	for _, r := range e.admitted {
		runs = append(runs, r)
	}
	e.mu.Unlock()
	for _, r := range runs {
		r.logAt(slog.LevelWarn, "cancelling handler at shutdown", "timeout", e.cfg.ShutdownTimeout)
		r.cancel(&cancelError{shutdown: true})
	}
	if waitClosed(idle, cancelGrace) {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.admitted {
		r.logAt(slog.LevelError, "abandoning handler that ignored cancellation; its result is lost")
	}
}

// awaitDelivery waits up to DeliveryTimeout for every finished result to be
// delivered, and names each one it gives up on.
func (e *Executor) awaitDelivery() {
	deadline := time.Now().Add(e.cfg.DeliveryTimeout)
	for {
		e.mu.Lock()
		drained := e.drained
		e.mu.Unlock()
		if waitClosed(drained, time.Until(deadline)) {
			e.mu.Lock()
			n := e.undelivered
			e.mu.Unlock()
			if n == 0 {
				return
			}
			continue
		}
		break
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.pending {
		switch {
		case d.done:
		case d.uncounted:
			e.log.Warn("result sent on a stream that then broke may not have arrived",
				"task_id", d.res.GetTaskId(), "step_id", d.res.GetStepId(), "attempt", d.res.GetAttempt())
		default:
			e.log.Error("result not delivered before shutdown",
				"task_id", d.res.GetTaskId(), "step_id", d.res.GetStepId(), "attempt", d.res.GetAttempt())
		}
	}
}

// endSessions ends every Execute stream and refuses new ones, so that
// GracefulStop does not wait for the coordinator to hang up.
func (e *Executor) endSessions() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	close(e.closing)
}

// stopServer stops srv gracefully, forcing it after stopGrace.
func (e *Executor) stopServer(srv *grpc.Server) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	if waitClosed(done, stopGrace) {
		return
	}
	e.log.Warn("graceful stop timed out, forcing", "timeout", stopGrace)
	srv.Stop()
	<-done
}

// waitClosed reports whether ch was closed within d.
func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// nudge wakes a loop without blocking.
func nudge(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
