package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	"github.com/tasker-go/tasker/executor/builtin"
)

// logFlags configure the structured logs of the server commands.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(cmd *cobra.Command, defaultLevel string) {
	cmd.Flags().StringVar(&l.format, "log-format", "text", "log format: text or json")
	cmd.Flags().StringVar(&l.level, "log-level", defaultLevel, "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format must be text or json, got %q", l.format)
	}
}

// storeFlags select and tune the store.
type storeFlags struct {
	db   string
	sync string
}

func (s *storeFlags) register(cmd *cobra.Command, defaultDB string) {
	cmd.Flags().StringVar(&s.db, "db", defaultDB, "store: a SQLite file path (or sqlite:PATH), or a postgres:// URL")
	cmd.Flags().StringVar(&s.sync, "sync", "full", "SQLite synchronous mode: full (durable against power loss) or normal")
}

// coordinatorOptions are what it takes to run a coordinator in-process.
type coordinatorOptions struct {
	listen   string
	id       string
	leaseTTL time.Duration
	store    storeFlags
	grace    time.Duration
	liveness time.Duration
	limits   coordinator.Limits
	// shutdown bounds how long stop waits for results of attempts in
	// flight.
	shutdown time.Duration
	// httpListen, when set, serves /metrics and /healthz (and /debug/pprof
	// with pprof).
	httpListen string
	pprof      bool
	log        *slog.Logger
}

// runningCoordinator is a coordinator serving gRPC on a listener.
type runningCoordinator struct {
	addr  string
	store *openedStore
	coord *coordinator.Coordinator
	srv   *grpc.Server
	done  chan error
	// shutdown bounds the wait for in-flight results at stop.
	shutdown time.Duration
	log      *slog.Logger
	httpAddr string
	stopHTTP context.CancelFunc
}

// startCoordinator opens the store, resumes unfinished tasks and serves the
// API on opts.listen.
func startCoordinator(ctx context.Context, opts coordinatorOptions) (*runningCoordinator, error) {
	lis, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.listen, err)
	}
	st, err := openStore(ctx, opts.store, opts.log)
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	id := opts.id
	if id == "" {
		// Stable across restarts on this host and address, so a restarted
		// coordinator takes back its own tasks at once.
		host, _ := os.Hostname()
		id = host + "/" + lis.Addr().String()
	}
	reg := newRegistry(st.stats)
	coord, err := coordinator.New(coordinator.Config{
		Store: st, ID: id, Logger: opts.log, ExecutorGrace: opts.grace, ExecutorLiveness: opts.liveness,
		LeaseTTL: opts.leaseTTL, Limits: opts.limits, Registerer: reg,
	})
	if err != nil {
		_ = lis.Close()
		_ = st.Close()
		return nil, err
	}
	if err := coord.Start(ctx); err != nil {
		_ = lis.Close()
		_ = st.Close()
		return nil, err
	}
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	httpAddr := ""
	if opts.httpListen != "" {
		if httpAddr, err = serveHTTP(httpCtx, opts.httpListen, reg, opts.pprof, opts.log); err != nil {
			stopHTTP()
			_ = lis.Close()
			_ = coord.Stop(ctx)
			_ = st.Close()
			return nil, err
		}
	}
	srv := grpc.NewServer(coord.ServerOptions()...)
	coord.Register(srv)
	// Server reflection lets grpcurl and ghz call the API without the
	// .proto files.
	reflection.Register(srv)
	rc := &runningCoordinator{
		addr: lis.Addr().String(), httpAddr: httpAddr, store: st, coord: coord, srv: srv, done: make(chan error, 1),
		shutdown: opts.shutdown, log: opts.log, stopHTTP: stopHTTP,
	}
	go func() { rc.done <- srv.Serve(lis) }()
	opts.log.Info("coordinator serving", "addr", rc.addr, "db", path, "sync", opts.store.sync, "coordinator_id", coord.ID())
	return rc, nil
}

// stop shuts the coordinator down: dispatching stops, results of attempts
// in flight land until the shutdown deadline (the API keeps serving them),
// then the server stops and the store is closed.
func (rc *runningCoordinator) stop() error {
	wait := rc.shutdown
	if wait <= 0 {
		wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := rc.coord.Stop(ctx); err != nil {
		rc.log.Warn("stopped with attempts in flight", "err", err)
	}
	stopped := make(chan struct{})
	go func() {
		rc.srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		rc.srv.Stop()
	}
	rc.stopHTTP()
	return rc.store.Close()
}

func newCoordinatorCmd(g *globals) *cobra.Command {
	var (
		opts coordinatorOptions
		logs logFlags
	)
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator: the API, the task state machines and dispatch to executors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(g.env.Stderr)
			if err != nil {
				return err
			}
			opts.log = log
			rc, err := startCoordinator(cmd.Context(), opts)
			if err != nil {
				return err
			}
			select {
			case <-cmd.Context().Done():
				log.Info("shutting down")
			case err := <-rc.done:
				log.Error("server stopped", "err", err)
			}
			return rc.stop()
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.listen, "listen", defaultCoordinator, "address to serve the coordinator API on")
	f.DurationVar(&opts.grace, "executor-grace", 5*time.Second, "how long an executor may be gone before its running steps are retried elsewhere")
	f.StringVar(&opts.id, "id", "", "coordinator id for its lease (default: host name and listen address, stable across restarts)")
	f.DurationVar(&opts.leaseTTL, "lease-ttl", 10*time.Second, "how long this coordinator owns its tasks without renewing; others take them over within about this long after it dies")
	f.DurationVar(&opts.liveness, "executor-liveness", 15*time.Second, "how long an executor's stream may stay silent before the executor counts as gone")
	f.DurationVar(&opts.shutdown, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long to wait for results of steps in flight")
	f.IntVar(&opts.limits.MaxContextBytes, "max-context-bytes", 1<<20, "largest task context accepted, in bytes")
	f.IntVar(&opts.limits.MaxResultBytes, "max-result-bytes", 4<<20, "largest step results accepted, in bytes; larger fail the step")
	f.IntVar(&opts.limits.MaxSteps, "max-steps", 1000, "most steps a template may have")
	f.IntVar(&opts.limits.MaxRequestBytes, "max-request-bytes", 8<<20, "largest gRPC request accepted, in bytes")
	f.StringVar(&opts.httpListen, "http-listen", "", "serve /metrics and /healthz on this address (off when empty)")
	f.BoolVar(&opts.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof on the --http-listen address")
	opts.store.register(cmd, "tasker.db")
	logs.register(cmd, "info")
	return cmd
}

// executorOptions are what it takes to run an executor in-process.
type executorOptions struct {
	listen, advertise, coordinator, id string
	capacity                           int
	log                                *slog.Logger
}

// startExecutor runs an executor hosting the built-in handlers until ctx
// ends; the returned channel yields Serve's result.
func startExecutor(ctx context.Context, opts executorOptions) (*executor.Executor, string, <-chan error, error) {
	ex, err := executor.New(executor.Config{
		ID: opts.id, Capacity: opts.capacity, Coordinator: opts.coordinator,
		AdvertiseAddress: opts.advertise, Logger: opts.log,
	})
	if err != nil {
		return nil, "", nil, err
	}
	if err := builtin.Register(ex); err != nil {
		return nil, "", nil, err
	}
	lis, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return nil, "", nil, fmt.Errorf("listen on %s: %w", opts.listen, err)
	}
	done := make(chan error, 1)
	go func() { done <- ex.Serve(ctx, lis) }()
	opts.log.Info("executor serving", "addr", lis.Addr().String(), "executor_id", ex.ID(), "coordinator", opts.coordinator, "capacity", opts.capacity)
	return ex, lis.Addr().String(), done, nil
}

func newExecutorCmd(g *globals) *cobra.Command {
	var (
		opts executorOptions
		logs logFlags
	)
	cmd := &cobra.Command{
		Use:   "executor",
		Short: "Run an executor hosting the built-in handlers (noop, echo, sleep, flaky)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(g.env.Stderr)
			if err != nil {
				return err
			}
			opts.log, opts.coordinator = log, g.coordinator
			_, _, done, err := startExecutor(cmd.Context(), opts)
			if err != nil {
				return err
			}
			return <-done
		},
	}
	cmd.Flags().StringVar(&opts.listen, "listen", "127.0.0.1:7071", "address to serve the executor on")
	cmd.Flags().StringVar(&opts.advertise, "advertise", "", "address the coordinator should dial (default: the listen address)")
	cmd.Flags().StringVar(&opts.id, "id", "", "executor id (default: random)")
	cmd.Flags().IntVar(&opts.capacity, "capacity", executor.DefaultCapacity, "steps run at once")
	logs.register(cmd, "info")
	return cmd
}
