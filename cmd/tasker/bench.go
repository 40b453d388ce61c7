package main

import (
	"errors"
	"fmt"
	"io"
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
	fanout           int
	tasks            int
	concurrency      int
	duration         time.Duration
	executors        int
	executorCapacity int
	sample           int
	metricsURL       string
	store            storeFlags
	logs             logFlags
	out              outputFlag
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

The executors run inside bench and host a noop handler that records every
dispatch. A progress line goes to stderr every 2s; the summary (one line, or
one JSON object with -o json) goes to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, g, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.shape, "shape", "linear4", "workflow shape: "+strings.Join(bench.ShapeNames(), ", "))
	fl.IntVar(&f.fanout, "fanout", bench.DefaultFanout, "width of the fanout shape (1 → N → 1)")
	fl.IntVar(&f.tasks, "tasks", bench.DefaultTasks, "tasks to create (0: no limit, needs --duration)")
	fl.IntVar(&f.concurrency, "concurrency", bench.DefaultConcurrency, "tasks in flight at once")
	fl.DurationVar(&f.duration, "duration", 0, "stop creating tasks after this long (0: only --tasks limits the run)")
	fl.IntVar(&f.executors, "executors", bench.DefaultExecutors, "executors bench hosts")
	fl.IntVar(&f.executorCapacity, "executor-capacity", bench.DefaultExecutorCapacity, "steps each executor runs at once")
	fl.IntVar(&f.sample, "sample", bench.DefaultSampleTasks, "finished tasks read back to measure dispatch overhead")
	fl.StringVar(&f.metricsURL, "coordinator-metrics", "", "with --coordinator: its Prometheus /metrics URL")
	f.store.register(cmd, "")
	fl.Lookup("db").Usage = "SQLite file for the coordinator bench starts (default: a new temporary file, removed afterwards)"
	f.logs.register(cmd, "error")
	f.out.register(cmd)
	return cmd
}

func runBench(cmd *cobra.Command, g *globals, f *benchFlags) (err error) {
	ctx := cmd.Context()
	asJSON, err := f.out.json()
	if err != nil {
		return err
	}
	// Progress lines, executor logs and the child's output all reach stderr
	// from their own goroutines.
	stderr := &lockedWriter{w: g.env.Stderr}
	log, err := f.logs.logger(stderr)
	if err != nil {
		return err
	}
	if f.store.sync != "full" && f.store.sync != "normal" {
		return fmt.Errorf("--sync must be full or normal, got %q", f.store.sync)
	}
	cfg := bench.Config{
		Shape: f.shape, Fanout: f.fanout, Tasks: f.tasks, Concurrency: f.concurrency, Duration: f.duration,
		Executors: f.executors, ExecutorCapacity: f.executorCapacity, SampleTasks: f.sample,
		Progress: stderr, Logger: log,
	}
	// Only an explicit --coordinator targets a running coordinator; the
	// environment variable alone does not, so a shell set up for the other
	// commands still benchmarks a clean child by default.
	if cmd.Flags().Changed("coordinator") {
		if cmd.Flags().Changed("db") || cmd.Flags().Changed("sync") {
			return errors.New("--db and --sync configure the coordinator bench starts; they cannot be used with --coordinator")
		}
		cfg.Coordinator, cfg.MetricsURL = g.coordinator, f.metricsURL
	} else {
		if f.metricsURL != "" {
			return errors.New("--coordinator-metrics needs --coordinator")
		}
		child, cleanup, err := startBenchCoordinator(cmd, stderr, f)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := cleanup(); err == nil {
				err = cerr
			}
		}()
		cfg.Coordinator, cfg.MetricsURL, cfg.PID, cfg.Sync = child.Addr, child.MetricsURL, child.PID, f.store.sync
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

// startBenchCoordinator runs this binary's coordinator command as a child on
// --db or a temporary store; cleanup stops it and removes a temporary store.
func startBenchCoordinator(cmd *cobra.Command, stderr io.Writer, f *benchFlags) (*bench.Child, func() error, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find the tasker binary: %w", err)
	}
	db, tmpDir := f.store.db, ""
	if db == "" {
		if tmpDir, err = os.MkdirTemp("", "tasker-bench-"); err != nil {
			return nil, nil, fmt.Errorf("create store directory: %w", err)
		}
		db = filepath.Join(tmpDir, "bench.db")
	}
	removeTmp := func() error {
		if tmpDir == "" {
			return nil
		}
		if err := os.RemoveAll(tmpDir); err != nil {
			return fmt.Errorf("remove temporary store: %w", err)
		}
		return nil
	}
	child, err := bench.StartChild(cmd.Context(), bench.ChildConfig{Binary: bin, DB: db, Sync: f.store.sync, Output: stderr})
	if err != nil {
		return nil, nil, errors.Join(err, removeTmp())
	}
	fmt.Fprintf(stderr, "bench: coordinator pid=%d addr=%s db=%s sync=%s\n", child.PID, child.Addr, db, f.store.sync)
	return child, func() error {
		return errors.Join(child.Stop(10*time.Second), removeTmp())
	}, nil
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
