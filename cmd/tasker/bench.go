package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-go/tasker/bench"
)

// benchFlags are the options of tasker bench.
type benchFlags struct {
	shape            string
	flow             bool
	fanout           int
	tasks            int
	concurrency      int
	duration         time.Duration
	executors        int
	executorCapacity int
	sample           int
	metricsURL       string
	coordinators     int
	keepDB           bool
	// executorsInProcess keeps the executors inside bench's process instead
	// of a child process each.
	executorsInProcess bool
	completions        string
	profileDir         string
	// executorToken is the token of the executors bench hosts; default
	// the global --token.
	executorToken string
	store         storeFlags
	logs          logFlags
	out           outputFlag
}

func newBenchCmd(g *globals) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a coordinator under load: throughput, latency, dispatch overhead, commits, CPU and memory",
		Long: `bench runs a workflow shape many times with a bounded number of tasks in
flight and reports what it cost.

By default it starts its own coordinator as a child process of this binary on
loopback ports and a new temporary SQLite file (or --db, used as is and kept,
so a run can measure against a store that already holds much history), which
lets the coordinator's CPU and memory be measured apart from the load. With an
explicit --coordinator flag (TASKER_COORDINATOR alone is not enough) it
targets a running coordinator instead; --coordinator-metrics then names its
/metrics for commits, batch size, CPU and memory.

With --db postgres://... the run gets a new schema of its own in that
database (named on stderr, dropped afterwards unless --keep-db), and
--coordinators N starts N coordinators sharing it: tasks are created on each
in turn and watched where they were created, the executors register with all,
and commits, CPU and memory are those of the whole cluster (per coordinator
under per_coordinator in -o json). SQLite serves one coordinator only.

With --coordinator, bench calls it with the global --tls-ca, --tls-cert,
--tls-key and --token (or TASKER_TOKEN), as the other commands do; the token
needs write access. The executors bench hosts then serve TLS with --tls-cert
and --tls-key (requiring the coordinator's certificate from --tls-ca, as the
executor command does) and register with --executor-token (or
TASKER_EXECUTOR_TOKEN; default --token), which needs executor access.

The executors host a noop handler that records every dispatch. When bench
starts the coordinators, each executor runs as a child process of this binary
too (unless --executors-in-process), so the CPU of the coordinators, of the
executors and of the load generator (bench itself: creating tasks and
learning of their ends) is each measured on its own, from /proc, over the
measured window: cpu_seconds_per_1k_steps_by_process in -o json. With
--coordinator the executors run inside bench, and its load-generator figure
includes them. --profile DIR writes CPU profiles of each over the same window:
load-generator.pprof, executor-N.pprof, and coordinator-N-SSS.pprof, slices of
2s taken from the coordinator's /debug/pprof (bench starts its coordinators
with --pprof; with --coordinator it needs --coordinator-metrics and a
coordinator serving --pprof there). Merge slices with go tool pprof FILE....

bench learns of finished tasks from each coordinator's event log
(SubscribeEvents, one stream per coordinator), and a task's latency ends at
its terminal transition's recorded time: it leaves out the durable commit of
that last transition. --completions watch opens a WatchTask stream per task
instead, as earlier versions did, and ends the latency when the transition
reaches bench.

A progress line goes to stderr every 2s; the summary (one line, or one JSON
object with -o json) goes to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, g, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.shape, "shape", "linear4", "workflow shape: "+strings.Join(bench.ShapeNames(), ", "))
	fl.IntVar(&f.fanout, "fanout", bench.DefaultFanout, "width of the fanout shape (1 → N → 1)")
	fl.BoolVar(&f.flow, "flow", false, "add a concurrency key and a rate limit (per tenant, never short) to the template, to measure their bookkeeping")
	fl.IntVar(&f.tasks, "tasks", bench.DefaultTasks, "tasks to create (0: no limit, needs --duration)")
	fl.IntVar(&f.concurrency, "concurrency", bench.DefaultConcurrency, "tasks in flight at once")
	fl.DurationVar(&f.duration, "duration", 0, "stop creating tasks after this long (0: only --tasks limits the run)")
	fl.IntVar(&f.executors, "executors", bench.DefaultExecutors, "executors bench hosts")
	fl.IntVar(&f.executorCapacity, "executor-capacity", bench.DefaultExecutorCapacity, "steps each executor runs at once")
	fl.IntVar(&f.sample, "sample", bench.DefaultSampleTasks, "finished tasks read back to measure dispatch overhead")
	fl.StringVar(&f.metricsURL, "coordinator-metrics", "", "with --coordinator: its Prometheus /metrics URL")
	fl.IntVar(&f.coordinators, "coordinators", 1, "coordinators bench starts on the same --db (more than 1 needs PostgreSQL)")
	fl.StringVar(&f.executorToken, "executor-token", "", "with --coordinator: token the executors bench hosts send when they register and report (executor access; env "+envExecutorToken+"; default --token)")
	fl.BoolVar(&f.keepDB, "keep-db", false, "keep the temporary SQLite file or PostgreSQL schema of the run, to inspect it")
	fl.BoolVar(&f.executorsInProcess, "executors-in-process", false, "run the executors inside bench instead of a child process each (their CPU then counts as the load generator's)")
	fl.StringVar(&f.completions, "completions", bench.CompletionsEvents, "how bench learns that a task ended: events (one event stream per coordinator) or watch (a WatchTask stream per task)")
	fl.StringVar(&f.profileDir, "profile", "", "write CPU profiles of the coordinators, the executors and the load generator over the measured window to this directory")
	f.store.register(cmd, "")
	fl.Lookup("db").Usage = "store for the coordinators bench starts: a SQLite file (default: a new temporary file, removed afterwards) " +
		"or a postgres:// URL (the run uses a new schema there)"
	fl.Lookup("sync").Usage = "SQLite synchronous mode of the coordinator bench starts: full or normal (not for PostgreSQL)"
	f.logs.register(cmd, "error")
	f.out.register(cmd)
	cmd.AddCommand(newBenchExecutorCmd(g))
	return cmd
}

// newBenchExecutorCmd is the executor process bench starts for each of its
// executors: not for people, so hidden.
func newBenchExecutorCmd(g *globals) *cobra.Command {
	var (
		cfg   bench.ExecutorProcessConfig
		addrs []string
		logs  logFlags
	)
	cmd := &cobra.Command{
		Use:    "executor",
		Short:  "Run one of bench's executors (started by bench itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Tuned as tasker executor is, which it stands for.
			tuneGC(g.env.getenv)
			log, err := logs.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg.Logger, cfg.Coordinators = log, addrs
			return bench.ServeExecutorProcess(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.ID, "id", "", "executor id")
	fl.IntVar(&cfg.Capacity, "capacity", bench.DefaultExecutorCapacity, "steps run at once")
	fl.StringSliceVar(&addrs, "coordinator-addrs", nil, "coordinators to register with, comma-separated")
	logs.register(cmd, "error")
	return cmd
}

func runBench(cmd *cobra.Command, g *globals, f *benchFlags) (err error) {
	ctx := cmd.Context()
	asJSON, err := f.out.json()
	if err != nil {
		return err
	}
	// Progress lines, executor logs and the children's output all reach
	// stderr from their own goroutines.
	stderr := &lockedWriter{w: g.env.Stderr}
	log, err := f.logs.logger(stderr)
	if err != nil {
		return err
	}
	if err := checkBenchFlags(cmd, f); err != nil {
		return err
	}
	cfg := bench.Config{
		Shape: f.shape, Fanout: f.fanout, Flow: f.flow, Tasks: f.tasks, Concurrency: f.concurrency, Duration: f.duration,
		Executors: f.executors, ExecutorCapacity: f.executorCapacity, SampleTasks: f.sample,
		Progress: stderr, Logger: log, Completions: f.completions, ProfileDir: f.profileDir,
	}
	if cmd.Flags().Changed("coordinator") {
		cfg.Coordinator, cfg.MetricsURL = g.coordinator, f.metricsURL
		if f.profileDir != "" && f.metricsURL != "" {
			// --pprof serves beside /metrics.
			cfg.PprofURL = strings.TrimSuffix(f.metricsURL, "/metrics") + "/debug/pprof"
		}
		if err := benchSecurity(&cfg, g, f); err != nil {
			return err
		}
	} else {
		cluster, err := startBenchCoordinators(cmd, stderr, f)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := cluster.cleanup(); err == nil {
				err = cerr
			}
		}()
		first := cluster.children[0]
		cfg.Coordinator, cfg.MetricsURL, cfg.PID, cfg.PprofURL = first.Addr, first.MetricsURL, first.PID, first.PprofURL
		for _, c := range cluster.children[1:] {
			cfg.Coordinators = append(cfg.Coordinators, bench.Target{Addr: c.Addr, MetricsURL: c.MetricsURL, PID: c.PID, PprofURL: c.PprofURL})
		}
		if !f.executorsInProcess {
			if cfg.ExecutorBinary, err = os.Executable(); err != nil {
				return fmt.Errorf("find the tasker binary: %w", err)
			}
			cfg.ExecutorOutput = stderr
		}
		cfg.Store, cfg.Schema = "sqlite", cluster.schema
		if cluster.postgres {
			cfg.Store = "postgres"
		} else {
			cfg.Sync = f.store.sync
		}
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return rep.WriteJSON(g.env.Stdout)
	}
	return rep.WriteText(g.env.Stdout)
}

// envExecutorToken is the token of bench's executors when
// --executor-token is not given.
const envExecutorToken = "TASKER_EXECUTOR_TOKEN"

// benchSecurity sets how bench reaches a running coordinator: its own calls
// carry the global TLS flags and token as every client command's do, and
// its executors are secured as the executor command secures itself.
func benchSecurity(cfg *bench.Config, g *globals, f *benchFlags) error {
	dial, err := coordinatorDialOptions(g.tls, g.bearerToken())
	if err != nil {
		return err
	}
	token := f.executorToken
	if token == "" {
		token = g.env.getenv(envExecutorToken)
	}
	if token == "" {
		token = g.bearerToken()
	}
	sec, err := executorSecurity(executorOptions{listen: "127.0.0.1:0", tls: g.tls, token: token})
	if err != nil {
		return err
	}
	cfg.DialOptions, cfg.ExecutorDialOptions, cfg.ExecutorServerOptions = dial, sec.dial, sec.server
	return nil
}

// checkBenchFlags refuses combinations that would not do what they say.
func checkBenchFlags(cmd *cobra.Command, f *benchFlags) error {
	changed := cmd.Flags().Changed
	if f.completions != bench.CompletionsEvents && f.completions != bench.CompletionsWatch {
		return fmt.Errorf("--completions must be %s or %s, got %q", bench.CompletionsEvents, bench.CompletionsWatch, f.completions)
	}
	if f.coordinators < 1 {
		return fmt.Errorf("--coordinators must be at least 1, got %d", f.coordinators)
	}
	// Only an explicit --coordinator targets a running coordinator; the
	// environment variable alone does not, so a shell set up for the other
	// commands still benchmarks a clean child by default.
	if changed("coordinator") {
		if changed("db") || changed("sync") || changed("coordinators") || changed("keep-db") {
			return errors.New("--db, --sync, --coordinators and --keep-db configure the coordinators bench starts; they cannot be used with --coordinator")
		}
		if changed("executors-in-process") {
			return errors.New("--executors-in-process cannot be used with --coordinator: the executors always run inside bench then")
		}
		return nil
	}
	if f.metricsURL != "" {
		return errors.New("--coordinator-metrics needs --coordinator")
	}
	// The coordinators bench starts serve plaintext on loopback without
	// tokens; TLS files or tokens given for them would be silently unused.
	for _, name := range []string{"tls-ca", "tls-cert", "tls-key", "token", "executor-token"} {
		if changed(name) {
			return fmt.Errorf("--%s needs --coordinator: the coordinators bench starts itself serve plaintext on loopback without tokens", name)
		}
	}
	if bench.IsPostgres(f.store.db) {
		if changed("sync") {
			return errors.New("--sync is a SQLite setting; a PostgreSQL coordinator's commits are as durable as the server's synchronous_commit makes them")
		}
		return nil
	}
	if f.store.sync != "full" && f.store.sync != "normal" {
		return fmt.Errorf("--sync must be full or normal, got %q", f.store.sync)
	}
	if f.coordinators > 1 {
		return fmt.Errorf("--coordinators %d needs a postgres:// --db: a SQLite file serves one coordinator", f.coordinators)
	}
	return nil
}

// benchCluster is the coordinators bench started and what to undo after.
type benchCluster struct {
	children []*bench.Child
	postgres bool
	// schema is the PostgreSQL schema of the run.
	schema  string
	cleanup func() error
}

// startBenchCoordinators runs --coordinators children of this binary's
// coordinator command on one store: for PostgreSQL a new schema in --db,
// for SQLite --db or a temporary file. Its cleanup stops them and removes
// the temporary store or schema, unless --keep-db.
func startBenchCoordinators(cmd *cobra.Command, stderr io.Writer, f *benchFlags) (*benchCluster, error) {
	ctx := cmd.Context()
	bin, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the tasker binary: %w", err)
	}
	st, err := prepareBenchStore(ctx, stderr, f)
	if err != nil {
		return nil, err
	}
	cl := &benchCluster{postgres: bench.IsPostgres(f.store.db), schema: st.schema}
	stopAll := func() error {
		errs := make([]error, len(cl.children))
		var wg sync.WaitGroup
		for i, c := range cl.children {
			wg.Go(func() { errs[i] = c.Stop(10 * time.Second) })
		}
		wg.Wait()
		// The store goes only once no child holds it open.
		return errors.Join(errors.Join(errs...), st.remove())
	}
	syncMode := f.store.sync
	if cl.postgres {
		syncMode = ""
	}
	for i := range f.coordinators {
		child, err := bench.StartChild(ctx, bench.ChildConfig{
			Binary: bin, DB: st.db, Sync: syncMode, ID: fmt.Sprintf("bench-coordinator-%d", i), Output: stderr,
			Pprof: f.profileDir != "",
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("coordinator %d: %w", i, err), stopAll())
		}
		cl.children = append(cl.children, child)
		if cl.postgres {
			fmt.Fprintf(stderr, "bench: coordinator %d pid=%d addr=%s db=%s\n", i, child.PID, child.Addr, redactURL(st.db))
		} else {
			fmt.Fprintf(stderr, "bench: coordinator pid=%d addr=%s db=%s sync=%s\n", child.PID, child.Addr, st.db, syncMode)
		}
	}
	cl.cleanup = stopAll
	return cl, nil
}

// benchStore is the store of a run.
type benchStore struct {
	// db is the children's --db.
	db string
	// schema is the PostgreSQL schema made for the run.
	schema string
	// remove removes what was made for the run; it does nothing for a
	// SQLite --db, which is the user's, nor with --keep-db.
	remove func() error
}

// prepareBenchStore makes the store of a run: a new schema for a
// PostgreSQL --db, a temporary file without --db. A SQLite --db is used as
// it is; only a temporary file is ever deleted, never a path or URL the
// user gave.
func prepareBenchStore(ctx context.Context, stderr io.Writer, f *benchFlags) (benchStore, error) {
	keep := func() error { return nil }
	switch {
	case bench.IsPostgres(f.store.db):
		schema, err := bench.CreateSchema(ctx, f.store.db)
		if err != nil {
			return benchStore{}, err
		}
		st := benchStore{db: schema.URL, schema: schema.Name, remove: keep}
		fate := "kept"
		if !f.keepDB {
			fate = "dropped afterwards; --keep-db keeps it"
			st.remove = func() error {
				// Drop even when the run was interrupted and ctx is done.
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				return schema.Drop(dctx)
			}
		}
		fmt.Fprintf(stderr, "bench: postgres schema=%s (%s)\n", schema.Name, fate)
		return st, nil
	case f.store.db != "":
		return benchStore{db: f.store.db, remove: keep}, nil
	}
	tmpDir, err := os.MkdirTemp("", "tasker-bench-")
	if err != nil {
		return benchStore{}, fmt.Errorf("create store directory: %w", err)
	}
	st := benchStore{db: filepath.Join(tmpDir, "bench.db"), remove: keep}
	if f.keepDB {
		fmt.Fprintf(stderr, "bench: keeping the store %s (--keep-db)\n", st.db)
		return st, nil
	}
	st.remove = func() error {
		if err := os.RemoveAll(tmpDir); err != nil {
			return fmt.Errorf("remove temporary store: %w", err)
		}
		return nil
	}
	return st, nil
}

// redactURL hides a password in a database URL that is printed.
func redactURL(db string) string {
	u, err := url.Parse(db)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// lockedWriter serialises writes from several goroutines to one writer.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
