package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tasker-go/tasker/examples/templates"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

func newDevCmd(g *globals) *cobra.Command {
	var (
		listen string
		// httpListen serves the dashboard, the REST API and /metrics.
		httpListen string
		store      storeFlags
		logs       logFlags
		once       bool
		// allowPlaintext permits --listen off loopback without TLS.
		allowPlaintext bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a coordinator and an executor on embedded SQLite, register the example templates and run a sample workflow",
		Long: `dev starts a coordinator and an executor hosting the built-in handlers in one
process, over real gRPC sockets on localhost and a SQLite file. It registers
the example templates, runs demo/order_fulfillment to completion while
printing its transitions, then keeps serving until Ctrl-C (or exits with
--once), so other terminals can use the CLI against it.

--http-listen serves the dashboard at /, the REST/JSON API under /api/v1/
(its OpenAPI document at /api/openapi.json), /metrics and the health checks
/healthz/live and /healthz/ready; dev prints the dashboard's URL once it is
up. Give it an empty value to serve no HTTP.

The global --tls-cert, --tls-key and --tls-ca apply to both services and to
dev's own client, as for the coordinator and executor commands (HTTPS then
too). dev never asks for tokens.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out := g.env.Stdout
			tuneGC(g.env.getenv)
			if httpListen != "" {
				if err := checkHostPort("--http-listen", httpListen, "7080"); err != nil {
					return err
				}
			}
			log, err := logs.logger(g.env.Stderr)
			if err != nil {
				return err
			}
			storeNote := ""
			if store.db == "" {
				dir, err := os.MkdirTemp(g.env.getenv("TMPDIR"), "tasker-dev-")
				if err != nil {
					return fmt.Errorf("create store directory: %w", err)
				}
				// Registered first, so it runs last: after the coordinator
				// has closed the store.
				defer func() {
					if err := os.RemoveAll(dir); err != nil {
						fmt.Fprintf(g.env.Stderr, "warning: remove the temporary store: %v\n", err)
					}
				}()
				store.db = filepath.Join(dir, "tasker.db")
				storeNote = ", removed on exit; give --db to keep one"
			}
			tp, stopTracing, err := newTracerProvider(ctx, "tasker-dev", g.env.getenv, g.env.Stderr)
			if err != nil {
				return err
			}
			defer func() { _ = stopTracing(context.Background()) }()
			fmt.Fprintf(out, "starting a coordinator on %s with the SQLite store %s%s\n", listen, store.db, storeNote)
			rc, err := startCoordinator(ctx, coordinatorOptions{
				listen: listen, httpListen: httpListen, store: store, grace: 5 * time.Second, log: log, tracer: tp,
				security: coordinatorSecurityFlags{files: g.tls, allowPlaintext: allowPlaintext},
			})
			if err != nil {
				return err
			}
			defer func() { _ = rc.stop() }()
			fmt.Fprintln(out, "starting an executor hosting the built-in handlers (noop, echo, sleep, flaky, decide)")
			exCtx, stopExecutor := context.WithCancel(context.Background())
			_, exAddr, exDone, err := startExecutor(exCtx, executorOptions{
				listen: "127.0.0.1:0", coordinator: rc.addr, capacity: 16, log: log, tls: g.tls, token: g.bearerToken(), tracer: tp,
			})
			if err != nil {
				stopExecutor()
				return err
			}
			defer func() {
				stopExecutor()
				<-exDone
			}()
			fmt.Fprintf(out, "coordinator on %s (store %s), executor on %s\n", rc.addr, store.db, exAddr)
			if rc.httpAddr != "" {
				https := g.tls.cert != ""
				fmt.Fprintf(out, "dashboard on %s\n", dashboardURL(rc.httpAddr, https))
				fmt.Fprintf(out, "REST/JSON API on %sapi/v1/ (OpenAPI document at /api/openapi.json)\n", dashboardURL(rc.httpAddr, https))
			}

			g.coordinator = rc.addr
			return g.withClient(ctx, func(ctx context.Context, c *client) error {
				fmt.Fprintln(out, "waiting for the executor to connect")
				if err := waitForExecutor(ctx, c); err != nil {
					return err
				}
				fmt.Fprintln(out, "registering the example templates")
				if err := registerExamples(ctx, c, out); err != nil {
					return err
				}
				sample, err := structpb.NewStruct(map[string]any{"order_id": fmt.Sprintf("demo-%d", time.Now().Unix())})
				if err != nil {
					return err
				}
				resp, err := c.CreateTask(ctx, &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "order_fulfillment", Context: sample})
				if err != nil {
					return err
				}
				id := resp.GetTask().GetId()
				fmt.Fprintf(out, "sample task %s (demo/order_fulfillment):\n", id)
				if err := watchTask(ctx, c, id, 0, func(m *coordinatorv1.WatchTaskResponse) error {
					return writeTransition(out, m.GetTransition())
				}); err != nil {
					return err
				}
				final, err := c.GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: id})
				if err != nil {
					return err
				}
				if err := writeTask(out, false, final.GetTask()); err != nil {
					return err
				}
				if final.GetTask().GetState() != coordinatorv1.State_STATE_COMPLETE {
					return fmt.Errorf("sample task ended %s, not complete", statepb.Name(final.GetTask().GetState()))
				}
				if once {
					return nil
				}
				fmt.Fprintf(out, "\nserving; try: tasker task list --coordinator %s   (Ctrl-C to stop)\n", rc.addr)
				select {
				case <-ctx.Done():
					fmt.Fprintln(out, "stopping")
					return nil
				case err := <-rc.done:
					return err
				}
			})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", defaultCoordinator, "address to serve the coordinator API on")
	cmd.Flags().StringVar(&httpListen, "http-listen", "127.0.0.1:7080", "address to serve the dashboard, the REST/JSON API, /metrics and health checks on (empty: none)")
	cmd.Flags().BoolVar(&once, "once", false, "exit after the sample task completes instead of serving")
	registerInsecure(cmd, &allowPlaintext)
	store.register(cmd, "")
	cmd.Flags().Lookup("db").Usage = "SQLite file to keep (default: a new file in a temporary directory, removed on exit)"
	logs.register(cmd, "error")
	return cmd
}

// dashboardURL is the URL a browser opens for the dashboard served on
// addr: a host the listener took as "any interface" is shown as loopback,
// since that is an address the browser on this machine can reach.
func dashboardURL(addr string, https bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}

// waitForExecutor waits until the coordinator has an executor connected.
func waitForExecutor(ctx context.Context, c *client) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		resp, err := c.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
		if err != nil {
			return err
		}
		for _, e := range resp.GetExecutors() {
			if e.GetConnected() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no executor connected: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// registerExamples registers every embedded example template.
func registerExamples(ctx context.Context, c *client, out interface{ Write([]byte) (int, error) }) error {
	files, err := templates.All()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t, err := template.Parse(files[n])
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		p, err := templatepb.ToProto(t)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if _, err := c.RegisterTemplate(ctx, &coordinatorv1.RegisterTemplateRequest{Template: p}); err != nil {
			return fmt.Errorf("register %s: %w", n, err)
		}
		fmt.Fprintf(out, "registered %s\n", protoTemplateRef(p))
	}
	return nil
}
