// Command perf-table runs the configurations of the performance table of
// issue 13 with `tasker bench` (and ghz, and the durable-commit
// benchmarks) and prints the table in Markdown, with the command line of
// each row and what else was running. It takes several minutes (the
// stored-steps row first fills a store with a million steps) and is not run
// in CI.
//
//	go run ./scripts/perf-table [-runs 3] [-postgres URL] [-stored-steps 1000000] [-ghz=false]
//
// Each row runs -runs times and reports the run with the median of its
// headline figure (latency or throughput), so the other figures of the row
// come from one and the same run. Progress goes to stderr, the table to
// stdout.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "perf-table:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	runs        int
	postgres    string
	storedSteps int
	ghz         bool
	durableN    int
	only        *regexp.Regexp
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("perf-table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.runs, "runs", 3, "runs of each row; the median run is reported")
	fs.StringVar(&o.postgres, "postgres", os.Getenv("TASKER_TEST_POSTGRES"), "PostgreSQL URL for the PostgreSQL row (default $TASKER_TEST_POSTGRES; empty skips the row)")
	fs.IntVar(&o.storedSteps, "stored-steps", 1_000_000, "steps to store before the stored-steps row (0 skips the row)")
	fs.BoolVar(&o.ghz, "ghz", true, "run the ghz CreateTask row (scripts/load-create-task.sh)")
	fs.IntVar(&o.durableN, "durable-iterations", 500, "iterations of each durable-commit and round-trip benchmark (0 skips them)")
	only := fs.String("only", "", "run only the rows whose measure matches this regular expression (the durable rows' is \"durable\")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.only, err = regexp.Compile(*only); err != nil {
		return fmt.Errorf("-only: %w", err)
	}
	if o.runs < 1 {
		return fmt.Errorf("-runs must be at least 1, got %d", o.runs)
	}
	if o.storedSteps < 0 || o.storedSteps%4 != 0 {
		return fmt.Errorf("-stored-steps must be a non-negative multiple of 4 (linear4 tasks), got %d", o.storedSteps)
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tasker-perf-table-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	bin := filepath.Join(work, "tasker")
	fmt.Fprintln(stderr, "perf-table: building tasker")
	if out, err := command(ctx, root, "go", "build", "-o", bin, "./cmd/tasker").CombinedOutput(); err != nil {
		return fmt.Errorf("build tasker: %w\n%s", err, out)
	}
	t := &table{ctx: ctx, bin: bin, root: root, runs: o.runs, log: stderr, only: o.only}
	t.started, t.loadBefore, t.busy = time.Now(), loadavg(), busiest(ctx)

	c1 := []string{"--shape", "linear4", "--tasks", "1000", "--concurrency", "1"}
	t.latencyRow("`linear4` c=1: task latency p50 (p99), events", c1)
	t.latencyRow("`linear4` c=1: task latency p50 (p99), --completions watch", append(slices.Clone(c1), "--completions", "watch"))
	t.throughputRow("`linear4`, 10,000 tasks, c=500: steps/s", []string{"--shape", "linear4", "--tasks", "10000", "--concurrency", "500"})
	t.throughputRow("`diamond`, 10,000 tasks, c=500: steps/s", []string{"--shape", "diamond", "--tasks", "10000", "--concurrency", "500"})
	t.latencyRow("`fanout 1000`, one task at a time: latency p50 (p99)", []string{"--shape", "fanout", "--fanout", "1000", "--tasks", "5", "--concurrency", "1"})
	if o.ghz && t.wants(ghzMeasure) {
		t.ghzRow()
	}
	if o.postgres != "" {
		t.throughputRow("PostgreSQL, one coordinator, `linear4` c=500: steps/s", []string{"--db", o.postgres, "--shape", "linear4", "--tasks", "10000", "--concurrency", "500"})
		// The URL may carry a password.
		if n := len(t.rows); n > 0 && strings.Contains(t.rows[n-1].command, o.postgres) {
			t.rows[n-1].command = strings.ReplaceAll(t.rows[n-1].command, o.postgres, "$TASKER_TEST_POSTGRES")
		}
	}
	if o.storedSteps > 0 && t.wants(storedMeasure) {
		t.storedRow(work, o.storedSteps)
	}
	if o.durableN > 0 && t.wants("durable") {
		t.durableRows(o.durableN)
	}
	t.loadAfter = loadavg()
	t.write(stdout)
	return errors.Join(t.errs...)
}

// moduleRoot is the directory of the tasker module, where go build and the
// scripts run.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run perf-table inside the tasker module")
	}
	return filepath.Dir(mod), nil
}

func command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	return cmd
}

// loadavg is /proc/loadavg's first three figures, to say how busy the
// machine was.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// busiest names the processes using the most CPU (over their lifetime,
// as ps counts it), to say what else was running.
func busiest(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "ps", "-eo", "pcpu=,comm=", "--sort=-pcpu").Output()
	if err != nil {
		return "unknown"
	}
	var top []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 2 || len(top) == 6 {
			break
		}
		top = append(top, f[1]+" "+f[0]+"%")
	}
	return strings.Join(top, ", ")
}

// row is one line of the table.
type row struct {
	measure, figure string
	// report is the median run's, for the CPU and memory columns; nil for
	// rows that are not tasker bench runs.
	report  *bench.Report
	command string
}

// table runs rows and collects them.
type table struct {
	ctx                   context.Context
	bin, root             string
	runs                  int
	log                   io.Writer
	only                  *regexp.Regexp
	rows                  []row
	notes                 []string
	errs                  []error
	started               time.Time
	loadBefore, loadAfter string
	// busy lists the processes using the most CPU when the table started.
	busy string
}

// bench runs tasker bench with args -runs times and returns the reports.
func (t *table) bench(name string, args []string) []*bench.Report {
	var reps []*bench.Report
	for i := range t.runs {
		fmt.Fprintf(t.log, "perf-table: %s, run %d/%d\n", name, i+1, t.runs)
		rep, err := t.benchOnce(args)
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		reps = append(reps, rep)
	}
	return reps
}

func (t *table) benchOnce(args []string) (*bench.Report, error) {
	var stdout, stderr bytes.Buffer
	cmd := command(t.ctx, t.root, t.bin, append(append([]string{"bench"}, args...), "-o", "json")...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("tasker bench %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.String(), 20))
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("tasker bench %s: read its report: %w", strings.Join(args, " "), err)
	}
	if rep.DuplicateDispatches != 0 || rep.TasksFailed != 0 {
		t.notes = append(t.notes, fmt.Sprintf("`tasker bench %s`: duplicate_dispatches=%d tasks_failed=%d", strings.Join(args, " "), rep.DuplicateDispatches, rep.TasksFailed))
	}
	return &rep, nil
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(len(all)-lines, 0):], "\n")
}

// median returns the element whose key is the median (the lower middle of
// an even count), or the zero value of an empty slice.
func median[T any](xs []T, key func(T) float64) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.SortFunc(s, func(a, b T) int { return cmpFloat(key(a), key(b)) })
	return s[(len(s)-1)/2]
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func benchCommand(args []string) string {
	return "`tasker bench " + strings.Join(args, " ") + "`"
}

// wants reports whether -only selects the row named measure.
func (t *table) wants(measure string) bool { return t.only.MatchString(measure) }

func (t *table) latencyRow(measure string, args []string) *bench.Report {
	if !t.wants(measure) {
		return nil
	}
	rep := median(t.bench(measure, args), func(r *bench.Report) float64 { return r.TaskLatencyMS.P50 })
	fig := "failed"
	if rep != nil {
		fig = fmt.Sprintf("%.2f ms (%.2f)", rep.TaskLatencyMS.P50, rep.TaskLatencyMS.P99)
	}
	t.rows = append(t.rows, row{measure: measure, figure: fig, report: rep, command: benchCommand(args)})
	return rep
}

func (t *table) throughputRow(measure string, args []string) *bench.Report {
	if !t.wants(measure) {
		return nil
	}
	rep := median(t.bench(measure, args), func(r *bench.Report) float64 { return r.StepsPerSec })
	fig := "failed"
	if rep != nil {
		fig = fmt.Sprintf("%.0f", rep.StepsPerSec)
	}
	t.rows = append(t.rows, row{measure: measure, figure: fig, report: rep, command: benchCommand(args)})
	return rep
}

// storedRow fills a SQLite store with steps linear4 steps, then measures
// linear4 c=500 on it in pairs with a run on an empty store, alternating,
// so that the comparison is of runs moments apart: these VMs drift in
// speed by more than the difference looked for within minutes, and a
// comparison with the empty-store row above, run minutes before, showed
// the drift as much as the store.
func (t *table) storedRow(work string, steps int) {
	db := filepath.Join(work, "stored.db")
	fill := []string{"--db", db, "--shape", "linear4", "--tasks", strconv.Itoa(steps / 4), "--concurrency", "500", "--sample", "1"}
	fmt.Fprintf(t.log, "perf-table: filling a store with %d steps\n", steps)
	fillRep, err := t.benchOnce(fill)
	if err != nil {
		t.errs = append(t.errs, fmt.Errorf("fill the store: %w", err))
		return
	}
	// The store is a temporary file: the table names it STORE.
	shown := func(args []string) string {
		return strings.ReplaceAll(benchCommand(args), db, "STORE")
	}
	t.rows = append(t.rows, row{
		measure: fmt.Sprintf("filling the store with %d steps (`linear4` c=500): steps/s", steps),
		figure:  fmt.Sprintf("%.0f", fillRep.StepsPerSec), report: fillRep, command: shown(fill),
	})
	emptyArgs := []string{"--shape", "linear4", "--tasks", "10000", "--concurrency", "500"}
	args := append([]string{"--db", db}, emptyArgs...)
	measure := fmt.Sprintf("`linear4` c=500 with %d stored steps: steps/s; peak RSS, against an empty store run alternately", steps)
	var full, empty []*bench.Report
	var changes, rss []float64
	for i := range t.runs {
		fmt.Fprintf(t.log, "perf-table: %s, pair %d/%d\n", measure, i+1, t.runs)
		e, err := t.benchOnce(emptyArgs)
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("%s: %w", measure, err))
			continue
		}
		f, err := t.benchOnce(args)
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("%s: %w", measure, err))
			continue
		}
		full, empty = append(full, f), append(empty, e)
		if e.StepsPerSec > 0 {
			changes = append(changes, (f.StepsPerSec/e.StepsPerSec-1)*100)
		}
		if e.PeakRSSMB != nil && f.PeakRSSMB != nil && *e.PeakRSSMB > 0 {
			rss = append(rss, (*f.PeakRSSMB / *e.PeakRSSMB - 1)*100)
		}
	}
	stepsOf := func(r *bench.Report) float64 { return r.StepsPerSec }
	rep := median(full, stepsOf)
	fig := "failed"
	if rep != nil {
		fig = fmt.Sprintf("%.0f vs %.0f empty", rep.StepsPerSec, median(empty, stepsOf).StepsPerSec)
		if len(changes) > 0 {
			parts := make([]string, len(changes))
			for i, c := range changes {
				parts[i] = fmt.Sprintf("%+.1f%%", c)
			}
			fig += fmt.Sprintf(" (pair by pair %s; median %+.1f%%)", strings.Join(parts, ", "), medianOf(changes))
		}
		if len(rss) > 0 {
			fig += fmt.Sprintf("; RSS %+.1f%%", medianOf(rss))
		}
	}
	t.rows = append(t.rows, row{measure: measure, figure: fig, report: rep, command: shown(args) + " alternating with " + benchCommand(emptyArgs)})
}

// medianOf returns the median of xs (the lower middle of an even count).
func medianOf(xs []float64) float64 {
	return median(xs, func(x float64) float64 { return x })
}

// Names of rows that -only selects before running them.
const (
	ghzMeasure    = "ghz `CreateTask`, 4-step template, 50 concurrent"
	storedMeasure = "stored steps"
)

// ghz's summary lines read by ghzRow.
var (
	ghzRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	ghzP99  = regexp.MustCompile(`99 % in ([0-9.]+) (ms|s|µs|us)`)
	ghzErrs = regexp.MustCompile(`\[(\w+)\]\s+(\d+) responses`)
	// ghzCPU is the line scripts/load-create-task.sh ends with when it
	// started the coordinator and executor itself.
	ghzCPU = regexp.MustCompile(`CPU seconds per 1k steps \(\d+ steps\): coordinator ([0-9.]+), executor ([0-9.]+), load generator ([0-9.]+)`)
)

// ghzRow runs scripts/load-create-task.sh -runs times.
func (t *table) ghzRow() {
	const measure = ghzMeasure
	type result struct {
		rate, p99 float64
		cpu       *bench.Report
	}
	var results []result
	for i := range t.runs {
		fmt.Fprintf(t.log, "perf-table: %s, run %d/%d\n", measure, i+1, t.runs)
		cmd := command(t.ctx, t.root, "scripts/load-create-task.sh")
		// The binary every other row runs: the script would otherwise
		// build its own from the working tree, which may have changed
		// since this table started.
		cmd.Env = append(os.Environ(), "REQUESTS=20000", "CONCURRENCY=50", "TASKER_COORDINATOR=", "TASKER_BIN="+t.bin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("%s: %w\n%s", measure, err, tail(string(out), 20)))
			continue
		}
		rate, p99, err := parseGhz(string(out))
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("%s: %w\n%s", measure, err, tail(string(out), 20)))
			continue
		}
		for _, m := range ghzErrs.FindAllStringSubmatch(string(out), -1) {
			if m[1] != "OK" {
				t.notes = append(t.notes, fmt.Sprintf("ghz run %d: %s responses %s", i+1, m[2], m[1]))
			}
		}
		cpu, err := parseGhzCPU(string(out))
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("%s: %w\n%s", measure, err, tail(string(out), 20)))
			continue
		}
		results = append(results, result{rate, p99, cpu})
	}
	fig := "failed"
	var cpu *bench.Report
	if len(results) > 0 {
		slices.SortFunc(results, func(a, b result) int { return cmpFloat(a.rate, b.rate) })
		m := results[(len(results)-1)/2]
		fig = fmt.Sprintf("%.0f/s, p99 %.1f ms", m.rate, m.p99)
		cpu = m.cpu
	}
	t.rows = append(t.rows, row{measure: measure, figure: fig, report: cpu, command: "`REQUESTS=20000 CONCURRENCY=50 scripts/load-create-task.sh`"})
}

// parseGhzCPU reads the CPU per process that load-create-task.sh prints
// after ghz's summary, as a report with only those figures set (the row
// has no peak RSS).
func parseGhzCPU(out string) (*bench.Report, error) {
	m := ghzCPU.FindStringSubmatch(out)
	if m == nil {
		return nil, errors.New("no CPU line from load-create-task.sh")
	}
	var v [3]float64
	for i := range v {
		f, err := strconv.ParseFloat(m[i+1], 64)
		if err != nil {
			return nil, fmt.Errorf("CPU line: %w", err)
		}
		v[i] = f
	}
	rep := &bench.Report{}
	rep.CPUPer1kSteps.Coordinator, rep.CPUPer1kSteps.Executors, rep.CPUPer1kSteps.LoadGenerator = &v[0], &v[1], &v[2]
	return rep, nil
}

// parseGhz reads requests per second and the p99 in milliseconds from
// ghz's summary.
func parseGhz(out string) (rate, p99 float64, err error) {
	m := ghzRate.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, errors.New("no Requests/sec in ghz's output")
	}
	if rate, err = strconv.ParseFloat(m[1], 64); err != nil {
		return 0, 0, err
	}
	m = ghzP99.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, errors.New("no 99 % line in ghz's output")
	}
	if p99, err = strconv.ParseFloat(m[1], 64); err != nil {
		return 0, 0, err
	}
	switch m[2] {
	case "s":
		p99 *= 1000
	case "µs", "us":
		p99 /= 1000
	}
	return rate, p99, nil
}

// benchLine is one result line of go test -bench.
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// durableRows runs bench's durable-commit and round-trip benchmarks, the
// floor under one task at a time, in the directory the stores of the bench
// runs live in (the temporary directory), and adds that floor for linear4:
// four durable commits and four stream round trips after CreateTask's
// call.
func (t *table) durableRows(n int) {
	fmt.Fprintln(t.log, "perf-table: durable-commit and round-trip benchmarks")
	median := map[string]float64{}
	for _, pattern := range []string{"Durable", "RoundTrip"} {
		args := []string{"test", "./bench", "-run", "^$", "-bench", pattern, "-benchtime", fmt.Sprintf("%dx", n), "-count", strconv.Itoa(t.runs)}
		cmd := command(t.ctx, t.root, "go", args...)
		cmd.Env = append(os.Environ(), "TASKER_DURABLE_DIR="+os.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("%s benchmarks: %w\n%s", pattern, err, tail(string(out), 20)))
			return
		}
		per := map[string][]float64{}
		var order []string
		for line := range strings.Lines(string(out)) {
			m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				continue
			}
			ns, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				continue
			}
			if _, ok := per[m[1]]; !ok {
				order = append(order, m[1])
			}
			per[m[1]] = append(per[m[1]], ns)
		}
		for _, name := range order {
			v := slices.Clone(per[name])
			slices.Sort(v)
			median[name] = v[(len(v)-1)/2] / 1000
			t.rows = append(t.rows, row{
				measure: "floor: " + name, figure: fmt.Sprintf("%.0f µs", median[name]),
				command: "`go " + strings.Join(args, " ") + "`",
			})
		}
	}
	commit, okC := median["DurableSQLiteCommit/synchronous=FULL"]
	stream, okS := median["RoundTripStream"]
	unary, okU := median["RoundTripUnary"]
	if okC && okS && okU {
		t.rows = append(t.rows, row{
			measure: "floor: `linear4` c=1, 4 × (commit + stream round trip) + unary call",
			figure:  fmt.Sprintf("%.2f ms", (4*(commit+stream)+unary)/1000),
			command: "computed from the rows above",
		})
	}
}

func optional(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.3f", *v)
}

func (t *table) write(w io.Writer) {
	fmt.Fprintf(w, "Measured %s (%d run(s) per row, median shown), %s; load average before %s, after %s.\n\n",
		t.started.UTC().Format("2006-01-02 15:04 MST"), t.runs, time.Since(t.started).Round(time.Second), t.loadBefore, t.loadAfter)
	fmt.Fprintf(w, "Busiest processes at the start (ps %%CPU): %s.\n\n", t.busy)
	fmt.Fprintln(w, "| measure | result | CPU s / 1k steps: coordinator | executors | load generator | peak RSS MB | command |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range t.rows {
		coord, exec, load, rss := "", "", "", ""
		if r.report != nil {
			coord, exec, load, rss = optional(r.report.CPUPer1kSteps.Coordinator), optional(r.report.CPUPer1kSteps.Executors),
				optional(r.report.CPUPer1kSteps.LoadGenerator), optional(r.report.PeakRSSMB)
			if r.report.ExecutorsInProcess {
				exec = "in load generator"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.measure, r.figure, coord, exec, load, rss, r.command)
	}
	for _, n := range t.notes {
		fmt.Fprintf(w, "\nNote: %s\n", n)
	}
	for _, err := range t.errs {
		fmt.Fprintf(w, "\nFailed: %s\n", strings.SplitN(err.Error(), "\n", 2)[0])
	}
}
