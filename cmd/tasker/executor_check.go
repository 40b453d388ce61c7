package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/conformance"
)

// checkCaseJSON is the -o json shape of one case, one per line; the last
// line is a checkSummaryJSON. Both carry "type" so a reader can tell them
// apart.
type checkCaseJSON struct {
	Type string `json:"type"`
	conformance.Result
	DurationMS int64 `json:"duration_ms"`
}

// checkSummaryJSON is the last -o json line of executor-check.
type checkSummaryJSON struct {
	Type       string `json:"type"`
	Address    string `json:"address"`
	ExecutorID string `json:"executor_id"`
	Language   string `json:"language"`
	Passed     int    `json:"passed"`
	Failed     int    `json:"failed"`
	Skipped    int    `json:"skipped"`
	DurationMS int64  `json:"duration_ms"`
}

// executorCheckFlags are executor-check's own flags.
type executorCheckFlags struct {
	out               outputFlag
	handlers          []string
	cases             []string
	secret            string
	shutdownCmd       string
	coordinatorListen string
	heartbeat         time.Duration
	caseTimeout       time.Duration
}

func newExecutorCheckCmd(g *globals) *cobra.Command {
	var f executorCheckFlags
	cmd := &cobra.Command{
		Use:   "executor-check ADDR",
		Short: "Check that the executor at ADDR speaks the executor protocol (the conformance kit)",
		Long: `Plays the coordinator's side of tasker.executor.v1 against the executor at
ADDR and prints one line per case: pass, fail or skip, what was sent, what
came back and the rule of docs/executor-protocol.md it checks (case ids are
described in docs/conformance.md), then a summary. Exits 1 if any case fails.

The executor must host the conformance test handlers (conformance.echo,
conformance.sleep, conformance.fail): start the Go executor with
'tasker executor --conformance', the Node one with --conformance.

The shutdown case needs control of the executor's process: give
--shutdown-cmd (e.g. "kill -TERM 1234"); it runs last and the executor is
gone after it. Without it the case is skipped. An executor that redelivers
results through ReportStepResult can be started with --coordinator pointing
at --coordinator-listen, where a stand-in coordinator records them.

TLS: --tls-ca verifies the executor's certificate and --tls-cert/--tls-key
are presented to it, as the coordinator does; --executor-secret (or
` + envExecutorSecret + `) is sent as the coordinator sends it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExecutorCheck(cmd.Context(), g, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.handlers, "handler", nil, "a further handler Describe must list (repeat or comma-separate)")
	fl.StringSliceVar(&f.cases, "case", nil, "run only these cases (ids: "+strings.Join(conformance.CaseIDs(), ", ")+"); describe always runs")
	fl.StringVar(&f.secret, "executor-secret", "", "secret sent as \"authorization: Bearer <secret>\" on Describe and Execute, for an executor started with --executor-secret; prefer the env "+envExecutorSecret)
	fl.StringVar(&f.shutdownCmd, "shutdown-cmd", "", "shell command that starts the executor's graceful shutdown (e.g. \"kill -TERM $PID\"); runs the shutdown case, last")
	fl.StringVar(&f.coordinatorListen, "coordinator-listen", "", "serve a stand-in coordinator (RegisterExecutor, ReportStepResult) on this host:port, for an executor started with --coordinator pointing here")
	fl.DurationVar(&f.heartbeat, "heartbeat-interval", conformance.DefaultHeartbeatInterval, "the heartbeat period the executor promises (the protocol's is 5s)")
	fl.DurationVar(&f.caseTimeout, "case-timeout", conformance.DefaultCaseTimeout, "longest wait for each expected message")
	f.out.register(cmd)
	return cmd
}

func runExecutorCheck(ctx context.Context, g *globals, f *executorCheckFlags, addr string) error {
	asJSON, err := f.out.json()
	if err != nil {
		return err
	}
	if err := checkHostPort("ADDR", addr, "7071"); err != nil {
		return err
	}
	if err := positiveDuration("--heartbeat-interval", f.heartbeat); err != nil {
		return err
	}
	if err := positiveDuration("--case-timeout", f.caseTimeout); err != nil {
		return err
	}
	secret := f.secret
	if secret == "" {
		secret = g.env.getenv(envExecutorSecret)
	}
	if err := checkExecutorSecret(secret); err != nil {
		return err
	}
	creds, err := g.tls.clientCreds()
	if err != nil {
		return err
	}
	opts := conformance.Options{
		Address:           addr,
		DialOptions:       []grpc.DialOption{grpc.WithTransportCredentials(creds)},
		Handlers:          f.handlers,
		Cases:             f.cases,
		HeartbeatInterval: f.heartbeat,
		CaseTimeout:       f.caseTimeout,
	}
	if secret != "" {
		opts.DialOptions = append(opts.DialOptions, grpc.WithPerRPCCredentials(auth.BearerTokenTLSOrLoopback(secret)))
	}
	if f.coordinatorListen != "" {
		if err := checkHostPort("--coordinator-listen", f.coordinatorListen, "7070"); err != nil {
			return err
		}
		serverOpts, err := checkCoordinatorTLS(g.tls)
		if err != nil {
			return err
		}
		lis, err := listenTCP("--coordinator-listen", f.coordinatorListen)
		if err != nil {
			return err
		}
		opts.Coordinator, opts.CoordinatorServerOptions = lis, serverOpts
		fmt.Fprintf(g.env.Stderr, "stand-in coordinator on %s\n", lis.Addr())
	}
	if f.shutdownCmd != "" {
		opts.Shutdown = shellShutdown(f.shutdownCmd, g.env.Stderr)
	}
	w := g.env.Stdout
	var writeErr error
	opts.OnResult = func(res conformance.Result) {
		if writeErr == nil {
			writeErr = writeCheckResult(w, asJSON, res)
		}
	}
	start := time.Now()
	report, err := conformance.Run(ctx, opts)
	if err != nil {
		return err
	}
	if writeErr != nil {
		return writeErr
	}
	sum := checkSummaryJSON{
		Type: "summary", Address: report.Address, ExecutorID: report.ExecutorID, Language: report.Language,
		Passed: report.Count(conformance.StatusPass), Failed: report.Count(conformance.StatusFail),
		Skipped: report.Count(conformance.StatusSkip), DurationMS: time.Since(start).Milliseconds(),
	}
	if asJSON {
		err = writeJSONLine(w, sum)
	} else {
		_, err = fmt.Fprintf(w, "executor %s (%s, executor_id %s): %d passed, %d failed, %d skipped in %s\n",
			sum.Address, orDash(sum.Language), orDash(sum.ExecutorID), sum.Passed, sum.Failed, sum.Skipped,
			time.Duration(sum.DurationMS)*time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if sum.Failed > 0 {
		return &exitError{code: exitFailed}
	}
	return nil
}

// writeCheckResult prints one case: a JSON line, or a line of text with
// its problems indented below it.
func writeCheckResult(w io.Writer, asJSON bool, res conformance.Result) error {
	if asJSON {
		return writeJSONLine(w, checkCaseJSON{Type: "case", Result: res, DurationMS: res.Duration.Milliseconds()})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s  %-17s  %s", strings.ToUpper(string(res.Status)), res.ID, res.Title)
	if res.Sent != "" {
		fmt.Fprintf(&b, "; sent: %s", oneLine(res.Sent))
	}
	if res.Got != "" {
		fmt.Fprintf(&b, "; got: %s", oneLine(res.Got))
	}
	fmt.Fprintf(&b, "  [%s, %s]\n", res.Rule, res.Duration.Round(time.Millisecond))
	for _, p := range res.Problems {
		fmt.Fprintf(&b, "      - %s\n", oneLine(p))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// checkCoordinatorTLS is how the stand-in coordinator serves: TLS with
// --tls-cert when given (verifying a client certificate from --tls-ca if
// the executor presents one), else plaintext.
func checkCoordinatorTLS(files tlsFiles) ([]grpc.ServerOption, error) {
	cert, err := files.keyPair()
	if err != nil || cert == nil {
		return nil, err
	}
	roots, err := files.roots()
	if err != nil {
		return nil, err
	}
	mode := tls.NoClientCert
	if roots != nil {
		mode = tls.VerifyClientCertIfGiven
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(auth.ServerTLS(*cert, roots, mode)))}, nil
}

// shellShutdown runs cmd with sh -c, its output to stderr, and waits for
// it (a kill returns at once; the executor's shutdown goes on after).
func shellShutdown(command string, stderr io.Writer) func(context.Context) error {
	return func(ctx context.Context) error {
		c := exec.CommandContext(ctx, "sh", "-c", command)
		c.Stdout, c.Stderr = stderr, stderr
		if err := c.Run(); err != nil {
			return fmt.Errorf("--shutdown-cmd %q: %w", command, err)
		}
		return nil
	}
}
