package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

// Defaults for the global flags.
const (
	envCoordinator     = "TASKER_COORDINATOR"
	envToken           = "TASKER_TOKEN"
	defaultCoordinator = "127.0.0.1:7070"
	defaultTimeout     = 30 * time.Second
)

// cliEnv is everything the CLI takes from its process, so tests can run the
// commands in-process with their own streams and environment.
type cliEnv struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads an environment variable; nil means none are set.
	Getenv func(string) string
}

func (e cliEnv) getenv(key string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(key)
}

// globals holds the process environment and the values of the global flags;
// every subcommand constructor receives it, and flag values are only valid
// once cobra has parsed the command line (inside RunE).
type globals struct {
	env         cliEnv
	coordinator string
	timeout     time.Duration
	// tls holds --tls-ca, --tls-cert and --tls-key.
	tls tlsFiles
	// token is --token; read it through bearerToken, which falls back to
	// TASKER_TOKEN.
	token string
}

// run executes the CLI with args and returns the process exit status. Errors
// are printed as "tasker: <err>" on stderr.
func run(ctx context.Context, args []string, env cliEnv) int {
	root := newRootCmd(env)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(env.Stderr, "tasker: %v\n", err)
		return 1
	}
	return 0
}

// newRootCmd builds the command tree. Server commands (coordinator, executor,
// dev, bench) are added in the AddCommand call below from their own files.
func newRootCmd(env cliEnv) *cobra.Command {
	g := &globals{env: env}
	root := &cobra.Command{
		Use:           "tasker",
		Short:         "Tasker workflow orchestrator",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)

	coordinator := env.getenv(envCoordinator)
	if coordinator == "" {
		coordinator = defaultCoordinator
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.coordinator, "coordinator", coordinator, "coordinator gRPC address host:port (env "+envCoordinator+")")
	pf.DurationVar(&g.timeout, "timeout", defaultTimeout, "timeout for each unary call to the coordinator")
	pf.StringVar(&g.tls.ca, "tls-ca", "", "PEM CA bundle: clients verify the coordinator with it; coordinator and executors verify each other's certificates with it and require client certificates from each other (mutual TLS)")
	pf.StringVar(&g.tls.cert, "tls-cert", "", "PEM certificate: clients present it as their client certificate; coordinator and executor serve TLS with it and present it when calling each other (give it serverAuth and clientAuth usages)")
	pf.StringVar(&g.tls.key, "tls-key", "", "PEM private key of --tls-cert")
	pf.StringVar(&g.token, "token", "", "bearer token sent with every call to the coordinator, by the CLI and by the executor command; prefer the env "+envToken+", which other users cannot read from the process list")

	root.AddCommand(
		newTemplateCmd(g),
		newTaskCmd(g),
		newStepCmd(g),
		newExecutorsCmd(g),
		newCoordinatorCmd(g),
		newExecutorCmd(g),
		newDevCmd(g),
		newBenchCmd(g),
	)
	return root
}
