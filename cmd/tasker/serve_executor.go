package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/executor"
	"github.com/tasker-go/tasker/executor/builtin"
	"github.com/tasker-go/tasker/executor/conformance"
)

// executorOptions are what it takes to run an executor in-process.
type executorOptions struct {
	listen, advertise, coordinator, id string
	// tracer continues the coordinator's traces in handlers; nil is off.
	tracer trace.TracerProvider
	// httpListen, when set, serves the executor's /metrics and /healthz.
	httpListen string
	// coordinators are further coordinators to register with, when
	// several share one database; capacity is split between them.
	coordinators []string
	capacity     int
	log          *slog.Logger
	// tls serves the executor and verifies the coordinator (global flags).
	tls tlsFiles
	// token is sent on the executor's calls to the coordinator.
	token string
	// allowPlaintext permits serving without TLS off loopback.
	allowPlaintext bool
	// tokensFile and jwtKey turn on tokens for --http-listen.
	tokensFile, jwtKey string
	// secret must be presented by coordinators on Describe and Execute.
	secret string
	// conformance also hosts the conformance.* test handlers that
	// `tasker executor-check` runs.
	conformance bool
}

// validate checks the flag values startExecutor would otherwise take for
// "use the default" or misread, naming the flag.
func (o *executorOptions) validate() error {
	errs := []error{checkHostPort("--listen", o.listen, "7071"), positiveInt("--capacity", o.capacity)}
	if o.httpListen != "" {
		errs = append(errs, checkHostPort("--http-listen", o.httpListen, "7081"))
	}
	return errors.Join(errs...)
}

// startExecutor runs an executor hosting the built-in handlers until ctx
// ends and returns it with its address; the returned channel yields Serve's
// result.
func startExecutor(ctx context.Context, opts executorOptions) (*executor.Executor, string, <-chan error, error) {
	re, err := runExecutor(ctx, opts)
	if err != nil {
		return nil, "", nil, err
	}
	return re.ex, re.addr, re.done, nil
}

// runningExecutor is an executor serving until its ctx ends.
type runningExecutor struct {
	ex *executor.Executor
	// addr is the gRPC address, httpAddr the --http-listen one ("" when
	// off).
	addr, httpAddr string
	// done yields Serve's result once the executor and its HTTP server
	// have stopped.
	done <-chan error
}

// runExecutor is startExecutor with everything it started.
func runExecutor(ctx context.Context, opts executorOptions) (*runningExecutor, error) {
	sec, err := executorSecurity(opts)
	if err != nil {
		return nil, err
	}
	if opts.httpListen != "" {
		if err := sec.http.check(opts.httpListen, "7081"); err != nil {
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ex, err := executor.New(executor.Config{
		ID: opts.id, Capacity: opts.capacity, Coordinator: opts.coordinator, Coordinators: opts.coordinators,
		AdvertiseAddress: opts.advertise, Logger: opts.log,
		ServerOptions: sec.server, DialOptions: sec.dial, TracerProvider: opts.tracer, Registerer: reg,
		Secret: opts.secret,
	})
	if err != nil {
		return nil, err
	}
	if err := builtin.Register(ex); err != nil {
		return nil, err
	}
	if opts.conformance {
		if err := conformance.Register(ex); err != nil {
			return nil, err
		}
	}
	lis, err := listenTCP("--listen", opts.listen)
	if err != nil {
		return nil, err
	}
	var httpSrv *httpServer
	if opts.httpListen != "" {
		if httpSrv, err = serveHTTP(httpConfig{addr: opts.httpListen, reg: reg, sec: sec.http, log: opts.log, ready: func(context.Context) error { return ex.Ready() }}); err != nil {
			_ = lis.Close()
			return nil, err
		}
	}
	done := make(chan error, 1)
	go func() {
		err := ex.Serve(ctx, lis)
		httpSrv.stop()
		done <- err
	}()
	opts.log.Info("executor serving", "addr", lis.Addr().String(), "executor_id", ex.ID(), "coordinator", opts.coordinator, "coordinators", opts.coordinators, "capacity", opts.capacity,
		"tls", opts.tls.cert != "", "mtls", opts.tls.ca != "", "token", opts.token != "", "secret", opts.secret != "")
	if opts.secret == "" && opts.tls.ca == "" && auth.CheckPlaintextListen(opts.listen) != nil {
		opts.log.Warn("executor authenticates no caller: anyone who reaches this address can run steps here; give --executor-secret or --tls-ca", "addr", lis.Addr().String())
	}
	re := &runningExecutor{ex: ex, addr: lis.Addr().String(), done: done}
	if httpSrv != nil {
		re.httpAddr = httpSrv.addr
	}
	return re, nil
}

func newExecutorCmd(g *globals) *cobra.Command {
	var (
		opts executorOptions
		logs logFlags
	)
	cmd := &cobra.Command{
		Use:   "executor",
		Short: "Run an executor hosting the built-in handlers (noop, echo, sleep, flaky, decide)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			tuneGC(g.env.getenv)
			log, err := logs.logger(g.env.Stderr)
			if err != nil {
				return err
			}
			opts.log, opts.coordinator, opts.tls, opts.token = log, g.coordinator, g.tls, g.bearerToken()
			if opts.secret == "" {
				opts.secret = g.env.getenv(envExecutorSecret)
			}
			tp, stopTracing, err := newTracerProvider(cmd.Context(), "tasker-executor", g.env.getenv, g.env.Stdout)
			if err != nil {
				return err
			}
			defer func() { _ = stopTracing(context.Background()) }()
			opts.tracer = tp
			_, _, done, err := startExecutor(cmd.Context(), opts)
			if err != nil {
				return err
			}
			return <-done
		},
	}
	cmd.Flags().StringVar(&opts.listen, "listen", "127.0.0.1:7071", "address to serve the executor on")
	cmd.Flags().StringVar(&opts.httpListen, "http-listen", "", "serve the executor's /metrics and health checks (/healthz, /healthz/live, /healthz/ready: ready while a coordinator has an Execute stream open) on this address (off when empty)")
	cmd.Flags().StringVar(&opts.advertise, "advertise", "", "address the coordinator should dial (default: the listen address)")
	cmd.Flags().StringVar(&opts.id, "id", "", "executor id (default: random)")
	cmd.Flags().IntVar(&opts.capacity, "capacity", executor.DefaultCapacity, "steps run at once")
	cmd.Flags().StringSliceVar(&opts.coordinators, "coordinators", nil, "further coordinators (ADDR[,ADDR...]) to register with besides --coordinator, when several share one database; the capacity is split between them")
	cmd.Flags().StringVar(&opts.secret, "executor-secret", "", "secret coordinators must send as \"authorization: Bearer <secret>\" on Describe and Execute (give the coordinators the same --executor-secret); prefer the env "+envExecutorSecret)
	cmd.Flags().StringVar(&opts.tokensFile, "tokens-file", "", "tokens file as the coordinator's (see tasker coordinator --help): --http-listen then needs a read token on every path but the health checks")
	cmd.Flags().StringVar(&opts.jwtKey, "jwt-key", "", "key verifying JWT bearer tokens, as the coordinator's: --http-listen then needs a read token on every path but the health checks")
	cmd.Flags().BoolVar(&opts.conformance, "conformance", false, "also host the conformance.echo, conformance.sleep and conformance.fail test handlers, for tasker executor-check")
	registerInsecure(cmd, &opts.allowPlaintext)
	logs.register(cmd, "info")
	return cmd
}

// executorSecurityOptions are what the executor's security flags amount to.
type executorSecurityOptions struct {
	server []grpc.ServerOption
	dial   []grpc.DialOption
	// http protects --http-listen.
	http httpSecurity
}

// executorSecurity turns the executor's TLS and token settings into gRPC
// options: with --tls-cert and --tls-key it serves TLS, and with --tls-ca
// it requires the coordinator's client certificate from that CA. Its calls
// to the coordinator use TLS when any TLS file is given (verified against
// --tls-ca or the system roots, presenting --tls-cert) and carry the token.
// --http-listen is served by the same rules (TLS with the same
// certificate, tokens from --tokens-file or --jwt-key). Off loopback the
// executor must authenticate its callers, by mutual TLS or by the secret.
func executorSecurity(opts executorOptions) (*executorSecurityOptions, error) {
	if err := checkHostPort("--listen", opts.listen, "7071"); err != nil {
		return nil, err
	}
	out := &executorSecurityOptions{http: httpSecurity{allowPlaintext: opts.allowPlaintext}}
	authn, _, err := loadAuthenticator(opts.tokensFile, opts.jwtKey)
	if err != nil {
		return nil, err
	}
	out.http.authn = authn
	if out.dial, err = coordinatorDialOptions(opts.tls, opts.token); err != nil {
		return nil, err
	}
	if err := checkExecutorSecret(opts.secret); err != nil {
		return nil, err
	}
	mutual := false
	if opts.tls.cert == "" && opts.tls.key == "" {
		if opts.tls.ca != "" {
			return nil, errors.New("--tls-ca needs --tls-cert and --tls-key: the executor must serve TLS to require the coordinator's certificate")
		}
		if err := checkPlaintext(opts.listen, opts.allowPlaintext); err != nil {
			return nil, err
		}
	} else {
		cert, err := opts.tls.keyPair()
		if err != nil {
			return nil, err
		}
		roots, err := opts.tls.roots()
		if err != nil {
			return nil, err
		}
		mutual = roots != nil
		out.server = []grpc.ServerOption{grpc.Creds(credentials.NewTLS(auth.ServerTLS(*cert, roots, tls.RequireAndVerifyClientCert)))}
		out.http.tls = auth.ServerTLS(*cert, nil, tls.NoClientCert)
	}
	// Whoever can open an Execute stream runs steps here and reads what
	// they carry, so callers off this host must prove who they are.
	if !mutual && opts.secret == "" && !opts.allowPlaintext && auth.CheckPlaintextListen(opts.listen) != nil {
		return nil, fmt.Errorf("refusing to serve the executor on non-loopback address %q to callers it cannot authenticate: "+
			"give --tls-ca (mutual TLS: coordinators must present a certificate from it) or --executor-secret "+
			"(or %s: coordinators must send it), or --insecure to serve anyway", opts.listen, envExecutorSecret)
	}
	return out, nil
}
