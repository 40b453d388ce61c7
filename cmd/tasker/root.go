package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults for the global flags.
const (
	envCoordinator     = "TASKER_COORDINATOR"
	envToken           = "TASKER_TOKEN"
	defaultPort        = "7070"
	defaultCoordinator = "127.0.0.1:" + defaultPort
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

// Exit statuses. Scripts rely on them: they are listed in the root
// command's help and in the README, and a value never changes meaning.
const (
	exitOK     = 0
	exitFailed = 1 // the command failed: the coordinator refused, a file is bad, ...
	exitUsage  = 2 // the command line is malformed: unknown command or flag, wrong number of arguments
	// A task that was waited for or watched stopped in a state other than
	// complete.
	exitTaskError     = 3
	exitTaskCancelled = 4
	exitTaskResolved  = 5
	// exitTimeout is --timeout passing before the task stopped.
	exitTimeout = 6
	// exitInterrupted is 128+SIGINT, what shells report for Ctrl-C.
	exitInterrupted = 130
)

// exitStatusHelp documents the statuses above in --help.
const exitStatusHelp = `Exit status:
  0    success; a task waited for (task create --wait) or watched completed
  1    the command failed (the coordinator refused, a file is bad, ...)
  2    usage: unknown command or flag, a flag value of the wrong type, wrong
       number of arguments
  3    the task waited for or watched ended in error
  4    ... ended cancelled
  5    ... ended resolved_manually
  6    --timeout passed before the task stopped
  130  interrupted (Ctrl-C); 143 on SIGTERM. The serving commands
       (coordinator, executor, dev) shut down cleanly on either and exit 0`

// usageError is a mistake on the command line; it exits with exitUsage.
type usageError struct {
	err error
	// cmd is the command whose usage to point at; nil for none.
	cmd *cobra.Command
}

func (e *usageError) Error() string {
	if e.cmd == nil {
		return e.err.Error()
	}
	return fmt.Sprintf("%v\nRun '%s --help' for usage.", e.err, e.cmd.CommandPath())
}

func (e *usageError) Unwrap() error { return e.err }

// exitError is a failure with its own exit status, such as a waited-for
// task that ended in error. An empty message prints nothing.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// signalError is the cause of a context cancelled by a signal; the process
// then exits 128+signal, as a shell reports a process the signal killed.
type signalError struct {
	sig syscall.Signal
}

func (e *signalError) Error() string { return e.sig.String() + " received" }

// interrupted reports whether err is what a command returns when its
// context is cancelled under it. A command refused before it started
// (a bad flag) is reported as such even if a signal came meanwhile.
func interrupted(err error) bool {
	var se *signalError
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &se) || status.Code(err) == codes.Canceled
}

// run executes the CLI with args and returns the process exit status.
// Errors are printed as "tasker: <err>" on stderr. An interrupted command
// prints nothing more: whatever failed, failed because it was stopped.
func run(ctx context.Context, args []string, env cliEnv) int {
	root := newRootCmd(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && interrupted(err) {
		var se *signalError
		if errors.As(context.Cause(ctx), &se) {
			return 128 + int(se.sig)
		}
		return exitInterrupted
	}
	code := exitFailed
	var (
		ue *usageError
		ee *exitError
	)
	switch {
	case errors.As(err, &ue):
		code = exitUsage
	case errors.As(err, &ee):
		code = ee.code
	}
	// A joined error is several problems (template apply checks every
	// file): one line each.
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		if msg := e.Error(); msg != "" {
			fmt.Fprintf(env.Stderr, "tasker: %s\n", msg)
		}
	}
	return code
}

// newRootCmd builds the command tree. Server commands (coordinator, executor,
// dev, bench) are added in the AddCommand call below from their own files.
func newRootCmd(env cliEnv) *cobra.Command {
	g := &globals{env: env}
	root := &cobra.Command{
		Use:   "tasker",
		Short: "Tasker workflow orchestrator",
		Long: "Tasker workflow orchestrator: a coordinator that owns task state and executors\n" +
			"that run steps. The client commands talk to a coordinator over gRPC\n" +
			"(--coordinator, default " + defaultCoordinator + ").\n\n" + exitStatusHelp,
		Version:       buildVersion(readBuildInfo()).short(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			g.coordinator = coordinatorTarget(g.coordinator)
			return nil
		},
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetVersionTemplate("tasker {{.Version}}\n")

	coordinator := env.getenv(envCoordinator)
	if coordinator == "" {
		coordinator = defaultCoordinator
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.coordinator, "coordinator", coordinator, "coordinator gRPC address host[:port], port "+defaultPort+" when left out (env "+envCoordinator+")")
	pf.DurationVar(&g.timeout, "timeout", defaultTimeout, "timeout for each call to the coordinator; given explicitly, it also bounds the whole wait of task create --wait and task watch (0: no limit)")
	pf.StringVar(&g.tls.ca, "tls-ca", "", "PEM CA bundle: clients verify the coordinator with it; coordinator and executors verify each other's certificates with it and require client certificates from each other (mutual TLS)")
	pf.StringVar(&g.tls.cert, "tls-cert", "", "PEM certificate: clients present it as their client certificate; coordinator and executor serve TLS with it and present it when calling each other (give it serverAuth and clientAuth usages)")
	pf.StringVar(&g.tls.key, "tls-key", "", "PEM private key of --tls-cert")
	pf.StringVar(&g.token, "token", "", "bearer token sent with every call to the coordinator, by the CLI and by the executor command; prefer the env "+envToken+", which other users cannot read from the process list")

	root.AddCommand(
		newTemplateCmd(g),
		newTaskCmd(g),
		newStepCmd(g),
		newExecutorsCmd(g),
		newAnalyticsCmd(g),
		newEventsCmd(g),
		newLimitCmd(g),
		newScheduleCmd(g),
		newCoordinatorCmd(g),
		newExecutorCmd(g),
		newExecutorCheckCmd(g),
		newDevCmd(g),
		newBenchCmd(g),
		newBackupCmd(g),
		newVersionCmd(g),
	)
	markUsageErrors(root)
	return root
}

// markUsageErrors makes every mistake cobra finds on a command line a
// usageError, and makes a command group (task, template, ...) refuse an
// unknown subcommand, suggesting the nearest, instead of printing its help
// and exiting 0.
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: err, cmd: cmd}
	})
	// Add help and completion now, as Execute would, so they are marked
	// too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var mark func(c *cobra.Command)
	mark = func(c *cobra.Command) {
		switch {
		case c.HasSubCommands() && !c.Runnable():
			c.Args = unknownSubcommand
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		case c.Args != nil:
			check := c.Args
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return &usageError{err: err, cmd: cmd}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			mark(sub)
		}
	}
	mark(root)
}

// unknownSubcommand is the Args check of a command group: any argument
// that got this far names no subcommand.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	// The nearest names only: at distance 2 "lst" would also suggest "get".
	for distance := 1; distance <= 2; distance++ {
		cmd.SuggestionsMinimumDistance = distance
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += `; did you mean "` + strings.Join(s, `" or "`) + `"?`
			break
		}
	}
	return &usageError{err: errors.New(msg), cmd: cmd}
}
