package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/template"
)

// coordinatorOptions are what it takes to run a coordinator in-process.
type coordinatorOptions struct {
	// tracer traces tasks and attempts; nil is off.
	tracer trace.TracerProvider
	listen string
	// advertise is where peer coordinators reach this one; default the
	// listen address (with the host name for an unspecified host).
	advertise string
	id        string
	leaseTTL  time.Duration
	// priorityAging is coordinator.Config.PriorityAging.
	priorityAging time.Duration
	store         storeFlags
	grace         time.Duration
	liveness      time.Duration
	// eventRetention is how long finished tasks' history is kept (0:
	// forever).
	eventRetention time.Duration
	// taskRetention is how long finished tasks are kept (0: forever).
	taskRetention time.Duration
	// scheduleReload is how often stored schedules are re-read.
	scheduleReload time.Duration
	limits         coordinator.Limits
	// shutdown bounds how long stop waits for results of attempts in
	// flight.
	shutdown time.Duration
	// httpListen, when set, serves /metrics and /healthz (and /debug/pprof
	// with pprof).
	httpListen string
	pprof      bool
	log        *slog.Logger
	// security holds the TLS, token and plaintext flags.
	security coordinatorSecurityFlags
}

// taskRetentionFlags checks --task-retention against --event-retention:
// tasks are deleted only once their events have left the event log.
func taskRetentionFlags(tasks, events time.Duration) error {
	switch {
	case tasks <= 0:
		return nil
	case events == 0:
		return fmt.Errorf("--task-retention %s needs --event-retention above 0: a task is deleted only once its events have left the event log, which --event-retention 0 keeps forever", tasks)
	case tasks < events:
		return fmt.Errorf("--task-retention %s is shorter than --event-retention %s: a task is deleted only once its events have left the event log; give --task-retention %s or more", tasks, events, events)
	}
	return nil
}

// validate checks the flag values startCoordinator would otherwise take
// for "use the default" or misread, naming the flag.
func (o *coordinatorOptions) validate() error {
	errs := []error{checkHostPort("--listen", o.listen, "7070")}
	if o.httpListen != "" {
		errs = append(errs, checkHostPort("--http-listen", o.httpListen, "7080"))
	}
	return errors.Join(append(errs,
		o.store.validate(),
		positiveDuration("--lease-ttl", o.leaseTTL),
		positiveDuration("--priority-aging", o.priorityAging),
		positiveDuration("--executor-grace", o.grace),
		positiveDuration("--executor-liveness", o.liveness),
		positiveDuration("--shutdown-timeout", o.shutdown),
		nonNegativeDuration("--event-retention", o.eventRetention),
		nonNegativeDuration("--task-retention", o.taskRetention),
		taskRetentionFlags(o.taskRetention, o.eventRetention),
		positiveDuration("--schedule-reload", o.scheduleReload),
		positiveInt("--max-context-bytes", o.limits.MaxContextBytes),
		positiveInt("--max-result-bytes", o.limits.MaxResultBytes),
		positiveInt("--max-steps", o.limits.MaxSteps),
		positiveInt("--max-request-bytes", o.limits.MaxRequestBytes),
	)...)
}

// advertiseAddress is the address peers reach a coordinator listening on
// addr at: addr itself, or this host's name with addr's port when addr's
// host is unspecified (0.0.0.0, ::).
func advertiseAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil && name != "" {
			return net.JoinHostPort(name, port)
		}
	}
	return addr
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
	// http serves --http-listen; nil when off.
	http *httpServer
	// api is the REST/JSON gateway http serves; nil when off.
	api *apiGateway
}

// startCoordinator opens the store, resumes unfinished tasks and serves the
// API on opts.listen.
func startCoordinator(ctx context.Context, opts coordinatorOptions) (*runningCoordinator, error) {
	sec, err := opts.security.build(opts.listen)
	if err != nil {
		return nil, err
	}
	if opts.httpListen != "" {
		if err := sec.http.check(opts.httpListen, "7080"); err != nil {
			return nil, err
		}
	}
	lis, err := listenTCP("--listen", opts.listen)
	if err != nil {
		return nil, err
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
	advertise := opts.advertise
	if advertise == "" {
		advertise = advertiseAddress(lis.Addr().String())
	}
	reg := newRegistry(st.stats)
	coord, err := coordinator.New(coordinator.Config{
		Store: st.Store, ID: id, Logger: opts.log, ExecutorGrace: opts.grace, ExecutorLiveness: opts.liveness,
		LeaseTTL: opts.leaseTTL, Limits: opts.limits, Registerer: reg, TracerProvider: opts.tracer, PriorityAging: opts.priorityAging,
		DialOptions: sec.dial, PeerDialOptions: sec.peerDial, Security: sec.security, Address: advertise,
		EventRetention: opts.eventRetention, TaskRetention: opts.taskRetention, ScheduleReload: opts.scheduleReload,
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
	var (
		httpSrv  *httpServer
		api      *apiGateway
		httpAddr string
	)
	if opts.httpListen != "" {
		api, err = newAPIGateway(apiConfig{
			target: loopbackTarget(lis.Addr().String()), dial: sec.loopback, executorCAs: sec.security.ExecutorCAs,
			maxRequestBytes: opts.limits.MaxRequestBytes, reg: reg,
		})
		if err == nil {
			httpSrv, err = serveHTTP(httpConfig{
				addr: opts.httpListen, reg: reg, pprof: opts.pprof, sec: sec.http, log: opts.log, ready: coord.Ready, api: api,
			})
		}
		if err != nil {
			api.close()
			_ = lis.Close()
			_ = coord.Stop(ctx)
			_ = st.Close()
			return nil, err
		}
		httpAddr = httpSrv.addr
	}
	srv := grpc.NewServer(append(coord.ServerOptions(), sec.server...)...)
	coord.Register(srv)
	// Server reflection lets grpcurl and ghz call the API without the
	// .proto files.
	reflection.Register(srv)
	rc := &runningCoordinator{
		addr: lis.Addr().String(), httpAddr: httpAddr, store: st, coord: coord, srv: srv, done: make(chan error, 1),
		shutdown: opts.shutdown, log: opts.log, http: httpSrv, api: api,
	}
	go func() { rc.done <- srv.Serve(lis) }()
	if sec.security.Authenticator == nil && auth.CheckPlaintextListen(opts.listen) != nil {
		opts.log.Warn("tokens are off: any caller that reaches this address may call every RPC; give --tokens-file or --jwt-key", "addr", rc.addr)
	}
	opts.log.Info("coordinator serving", "addr", rc.addr, "db", st.describe, "sync", opts.store.sync, "coordinator_id", coord.ID(),
		"tls", sec.tlsMode, "auth", sec.authMode)
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
	// Before the gRPC server: the REST API's streams are calls to it,
	// which its graceful stop would wait for.
	rc.http.stop()
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
	rc.api.close()
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
		Long: `coordinator serves the API, runs the task state machines and dispatches
steps to executors.

Security. Without --tls-cert and --tls-key it serves plaintext, and only on a
loopback address unless --insecure is given. With them it serves TLS (1.2 or
newer) and dials executors over TLS, presenting the same certificate.
--tls-ca makes TLS between coordinator and executors mutual: executors'
certificates are verified against it, and RegisterExecutor and
ReportStepResult require a client certificate from it (API callers need
none). --tls-client-ca requires a client certificate, from it or --tls-ca,
of every caller on every call, health checks included.

Tokens are off unless --tokens-file or --jwt-key is given: then every call
but health checks and reflection needs "authorization: Bearer <token>".
Access classes: read (get/list/watch, list executors), write (read plus
register templates, create, cancel, retry, resolve) and executor
(RegisterExecutor, ReportStepResult). Namespaces are checked per call;
listing tasks without --namespace needs a token granted "*" or exactly one
namespace.

--http-listen serves the REST/JSON API under /api/v1/ (every RPC as JSON;
its OpenAPI document at /api/openapi.json), /metrics and the health checks
/healthz, /healthz/live and /healthz/ready (200 while this coordinator holds
a live lease and its store answers, else 503 with the reason). It follows
the same rules: HTTPS with --tls-cert and --tls-key (client certificates only
with --tls-client-ca), plaintext only on loopback unless --insecure. The REST
API calls this coordinator's own listener with the caller's
"Authorization: Bearer <token>", so each call needs what the RPC needs over
gRPC; with tokens on, /metrics and /debug/pprof need a token with read
access; the health checks and the OpenAPI document need none.

Unless GOGC is set, the garbage collector runs at GOGC=200 rather than Go's
100: it trades some memory for about a tenth less CPU under load. GOGC and
GOMEMLIMIT, when set, are followed as usual.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			tuneGC(g.env.getenv)
			log, err := logs.logger(g.env.Stderr)
			if err != nil {
				return err
			}
			opts.log, opts.security.files = log, g.tls
			if opts.security.executorSecret == "" {
				opts.security.executorSecret = g.env.getenv(envExecutorSecret)
			}
			tp, stopTracing, err := newTracerProvider(cmd.Context(), "tasker-coordinator", g.env.getenv, g.env.Stdout)
			if err != nil {
				return err
			}
			defer func() { _ = stopTracing(context.Background()) }()
			opts.tracer = tp
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
	f.StringVar(&opts.advertise, "advertise", "", "address other coordinators reach this one at, to forward requests about tasks it owns (default: the listen address, with this host's name if it listens on all interfaces)")
	f.StringVar(&opts.id, "id", "", "coordinator id for its lease (default: host name and listen address, stable across restarts)")
	f.DurationVar(&opts.priorityAging, "priority-aging", 30*time.Second, "a step waiting for an executor slot gains one priority level per this much waiting, so none waits for ever behind higher priorities")
	f.DurationVar(&opts.leaseTTL, "lease-ttl", 10*time.Second, "how long this coordinator owns its tasks without renewing; others take them over within about this long after it dies")
	f.DurationVar(&opts.liveness, "executor-liveness", 15*time.Second, "how long an executor's stream may stay silent before the executor counts as gone")
	f.DurationVar(&opts.shutdown, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long to wait for results of steps in flight")
	f.DurationVar(&opts.eventRetention, "event-retention", 7*24*time.Hour, "how long the transitions of finished tasks are kept (each keeps its last); tasker events refuses cursors older than what was deleted (0: keep forever)")
	f.DurationVar(&opts.taskRetention, "task-retention", 0, "how long finished tasks (complete, cancelled, resolved_manually; not error) are kept before they are deleted with their steps, history and signals; at least --event-retention (0: keep forever)")
	f.DurationVar(&opts.scheduleReload, "schedule-reload", 5*time.Second, "how often stored schedules are re-read, which bounds how soon a schedule created, paused or deleted on another coordinator is seen here")
	f.IntVar(&opts.limits.MaxContextBytes, "max-context-bytes", 1<<20, "largest task context accepted, in bytes")
	f.IntVar(&opts.limits.MaxResultBytes, "max-result-bytes", 4<<20, "largest step results accepted, in bytes; larger fail the step")
	f.IntVar(&opts.limits.MaxSteps, "max-steps", template.DefaultMaxSteps, "most steps a template may have")
	f.IntVar(&opts.limits.MaxRequestBytes, "max-request-bytes", defaultMaxRequestBytes, "largest gRPC request (and REST API request body) accepted, in bytes")
	f.StringVar(&opts.httpListen, "http-listen", "", "serve the REST/JSON API (/api/v1/, /api/openapi.json), /metrics and /healthz, /healthz/live, /healthz/ready on this address (off when empty)")
	f.BoolVar(&opts.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof on the --http-listen address")
	opts.store.register(cmd, "tasker.db")
	opts.security.register(cmd)
	logs.register(cmd, "info")
	return cmd
}

// coordinatorSecurityFlags are the coordinator's security flags; the TLS
// files come from the global flags.
//
// TLS is all or nothing between a coordinator and its executors: with
// --tls-cert and --tls-key the coordinator serves TLS and dials executors
// over TLS, verifying them against --tls-ca (or the system roots) and
// presenting its own certificate. --tls-ca also asks every caller for a
// client certificate and makes RegisterExecutor and ReportStepResult
// require one from that CA. --tls-client-ca makes a client certificate
// (from it or --tls-ca) required of every caller on every call.
type coordinatorSecurityFlags struct {
	files          tlsFiles
	clientCA       string
	tokensFile     string
	jwtKey         string
	allowPlaintext bool
	// executorSecret is sent to executors on Describe and Execute.
	executorSecret string
}

func (f *coordinatorSecurityFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.executorSecret, "executor-secret", "", "secret sent to executors as \"authorization: Bearer <secret>\" on Describe and Execute, for executors started with the same --executor-secret; sent over TLS, or in plaintext only to loopback addresses (unless --insecure); prefer the env "+envExecutorSecret)
	fl.StringVar(&f.clientCA, "tls-client-ca", "", "PEM CA bundle: require every caller to present a client certificate from it (or from --tls-ca)")
	fl.StringVar(&f.tokensFile, "tokens-file", "", "YAML or JSON list of {name, token or token_sha256, namespaces, access: read|write|executor}; callers must then send a bearer token (with neither this nor --jwt-key, tokens are off)")
	fl.StringVar(&f.jwtKey, "jwt-key", "", "HMAC secret, or RSA/ECDSA/Ed25519 public key PEM, verifying JWT bearer tokens (claims sub, namespaces, access; exp required)")
	registerInsecure(cmd, &f.allowPlaintext)
}

// coordinatorSecurity is what the flags amount to.
type coordinatorSecurity struct {
	server []grpc.ServerOption
	dial   []grpc.DialOption
	// peerDial reaches other coordinators: the transport security of dial
	// without the executor secret (a forwarded request carries its
	// caller's own token).
	peerDial []grpc.DialOption
	security coordinator.Security
	// http protects --http-listen.
	http httpSecurity
	// loopback is how the REST API reaches this coordinator's own
	// listener: its transport security (see loopbackTLS), presenting the
	// coordinator's certificate where the listener requires one of every
	// caller.
	loopback []grpc.DialOption
	// tlsMode and authMode describe the setup in the startup log.
	tlsMode, authMode string
}

// build loads every file the flags name, so a bad file stops the start
// before anything is opened.
func (f *coordinatorSecurityFlags) build(listen string) (*coordinatorSecurity, error) {
	if err := checkHostPort("--listen", listen, "7070"); err != nil {
		return nil, err
	}
	out := &coordinatorSecurity{tlsMode: "off", authMode: "off"}
	if f.files.cert == "" && f.files.key == "" {
		if f.files.ca != "" || f.clientCA != "" {
			return nil, errors.New("--tls-ca and --tls-client-ca need --tls-cert and --tls-key: the coordinator must serve TLS to verify its peers")
		}
		if err := checkPlaintext(listen, f.allowPlaintext); err != nil {
			return nil, err
		}
		out.dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		out.loopback = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	} else {
		cert, err := f.files.keyPair()
		if err != nil {
			return nil, err
		}
		mesh, err := f.files.roots()
		if err != nil {
			return nil, err
		}
		var clientCAs *x509.CertPool
		mode := tls.NoClientCert
		out.tlsMode = "on"
		switch {
		case f.clientCA != "":
			files := []string{f.clientCA}
			if f.files.ca != "" {
				files = append(files, f.files.ca)
			}
			if clientCAs, err = auth.LoadCertPool(files...); err != nil {
				return nil, fmt.Errorf("--tls-client-ca: %w", err)
			}
			mode, out.tlsMode = tls.RequireAndVerifyClientCert, "mutual (every caller)"
		case mesh != nil:
			// Only executors must present a certificate; the Guard checks
			// that per call, so API callers without one still connect.
			clientCAs, mode, out.tlsMode = mesh, tls.VerifyClientCertIfGiven, "mutual (executors)"
		}
		out.server = []grpc.ServerOption{grpc.Creds(credentials.NewTLS(auth.ServerTLS(*cert, clientCAs, mode)))}
		// HTTP callers are never executors, so only --tls-client-ca asks
		// them for a certificate.
		if f.clientCA != "" {
			out.http.tls = auth.ServerTLS(*cert, clientCAs, mode)
		} else {
			out.http.tls = auth.ServerTLS(*cert, nil, tls.NoClientCert)
		}
		out.dial = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(auth.ClientTLS(mesh, cert)))}
		out.security.ExecutorCAs = mesh
		if out.loopback, err = loopbackDial(cert, mode == tls.RequireAndVerifyClientCert); err != nil {
			return nil, err
		}
	}
	out.peerDial = slices.Clone(out.dial)
	if f.executorSecret != "" {
		if err := checkExecutorSecret(f.executorSecret); err != nil {
			return nil, err
		}
		creds := auth.BearerTokenTLSOrLoopback(f.executorSecret)
		if f.allowPlaintext {
			creds = auth.BearerToken(f.executorSecret, false)
		}
		out.dial = append(out.dial, grpc.WithPerRPCCredentials(creds))
	}
	authn, mode, err := loadAuthenticator(f.tokensFile, f.jwtKey)
	if err != nil {
		return nil, err
	}
	out.security.Authenticator, out.authMode = authn, mode
	out.http.authn, out.http.allowPlaintext = authn, f.allowPlaintext
	return out, nil
}
