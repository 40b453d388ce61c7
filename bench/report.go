package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// Report is the outcome of a run. Its JSON form is a contract: scripts read
// tasks_per_sec, steps_per_sec, task_latency_ms, dispatch_overhead_ms,
// commits_per_sec, mean_batch_size, cpu_seconds_per_1k_steps,
// cpu_seconds_per_1k_steps_by_process, executors_in_process, peak_rss_mb
// and duplicate_dispatches, so those keys are always present; fields may be
// added, never renamed. Figures bench could not measure (no /metrics, no
// process to read) are null rather than a misleading zero.
type Report struct {
	TasksPerSec        float64         `json:"tasks_per_sec"`
	StepsPerSec        float64         `json:"steps_per_sec"`
	TaskLatencyMS      LatencySummary  `json:"task_latency_ms"`
	DispatchOverheadMS OverheadSummary `json:"dispatch_overhead_ms"`
	// CommitsPerSec and MeanBatchSize come from the store's group-commit
	// counters on /metrics.
	CommitsPerSec *float64 `json:"commits_per_sec"`
	MeanBatchSize *float64 `json:"mean_batch_size"`
	// CPUSecondsPer1kSteps is the coordinators' CPU (not the executors' nor
	// the load generator's) per 1,000 steps executed; the same figure as
	// CPUPer1kSteps.Coordinator.
	CPUSecondsPer1kSteps *float64 `json:"cpu_seconds_per_1k_steps"`
	// CPUPer1kSteps breaks the CPU of the run down by process.
	CPUPer1kSteps CPUBreakdown `json:"cpu_seconds_per_1k_steps_by_process"`
	// ExecutorsInProcess is true when the executors ran inside the load
	// generator's process: their CPU is then in LoadGenerator and
	// Executors is null.
	ExecutorsInProcess bool     `json:"executors_in_process"`
	PeakRSSMB          *float64 `json:"peak_rss_mb"`
	// DuplicateDispatches is handler invocations minus distinct steps
	// executed; anything but 0 without faults is a bug.
	DuplicateDispatches int64 `json:"duplicate_dispatches"`

	Shape string `json:"shape"`
	// Store is "sqlite" or "postgres" when bench started the coordinators
	// and so knows; Schema is the PostgreSQL schema the run used.
	Store       string  `json:"store,omitempty"`
	Schema      string  `json:"schema,omitempty"`
	Sync        string  `json:"sync,omitempty"`
	Tasks       int64   `json:"tasks"`
	TasksFailed int64   `json:"tasks_failed"`
	Steps       int64   `json:"steps"`
	DurationSec float64 `json:"duration_sec"`
	Concurrency int     `json:"concurrency"`
	Executors   int     `json:"executors"`
	// DispatchSamples is how many step dispatches the overhead percentiles
	// were computed from.
	DispatchSamples int `json:"dispatch_samples"`
	// Coordinators is how many coordinators shared the load. With more than
	// one, the figures above are the cluster's (commits, writes and CPU
	// summed, peak RSS the largest) and PerCoordinator breaks them down,
	// which shows whether the load was spread evenly.
	Coordinators   int                  `json:"coordinators"`
	PerCoordinator []CoordinatorFigures `json:"per_coordinator,omitempty"`
	// StaleWatchStates counts WatchTask streams whose message carrying the
	// task's own terminal transition gave an earlier task_state; the watch
	// still ended there. Anything but 0 is a coordinator bug.
	StaleWatchStates int64 `json:"stale_watch_states,omitempty"`
	// Profiles are the CPU profile files written (Config.ProfileDir).
	Profiles []string `json:"profiles,omitempty"`
}

// CPUBreakdown is CPU seconds (user plus system, from /proc or the
// coordinator's process_cpu_seconds_total) per 1,000 steps over the
// measured window, for each kind of process in a run. Each covers whole
// processes: gRPC, garbage collection and the runtime included. Null
// means not measured.
type CPUBreakdown struct {
	// Coordinator sums every coordinator process. A coordinator bench did
	// not start (--coordinator) is whatever process serves that address:
	// `tasker dev` would include its own executor.
	Coordinator *float64 `json:"coordinator"`
	// Executors sums the executor processes bench started; null when the
	// executors ran inside the load generator.
	Executors *float64 `json:"executors"`
	// LoadGenerator is bench's own process: creating tasks, learning of
	// their ends, progress and measurement, and the executors when they
	// ran in it.
	LoadGenerator *float64 `json:"load_generator"`
}

// CoordinatorFigures are one coordinator's figures in a run with several.
// Unmeasured figures are null, as in Report.
type CoordinatorFigures struct {
	Addr string `json:"addr"`
	// TasksCreated counts the tasks created (and watched) on it.
	TasksCreated  int64    `json:"tasks_created"`
	CommitsPerSec *float64 `json:"commits_per_sec"`
	MeanBatchSize *float64 `json:"mean_batch_size"`
	// CPUSeconds is its CPU time over the run, not per step: steps are
	// executed by the cluster, not by one coordinator.
	CPUSeconds *float64 `json:"cpu_seconds"`
	PeakRSSMB  *float64 `json:"peak_rss_mb"`
}

// LatencySummary holds task latency percentiles in milliseconds.
type LatencySummary struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// OverheadSummary holds dispatch overhead percentiles in milliseconds.
type OverheadSummary struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest sample with at least p% of the samples
// at or below it. It returns 0 for no samples. sorted must be ascending.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// millis converts a duration to milliseconds rounded to the microsecond, so
// reports do not print fifteen meaningless digits.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// round3 keeps three decimals.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// summarizeLatency sorts samples in place and summarizes them.
func summarizeLatency(samples []time.Duration) LatencySummary {
	slices.Sort(samples)
	return LatencySummary{
		P50: millis(Percentile(samples, 50)),
		P95: millis(Percentile(samples, 95)),
		P99: millis(Percentile(samples, 99)),
	}
}

// summarizeOverhead sorts samples in place and summarizes them.
func summarizeOverhead(samples []time.Duration) OverheadSummary {
	slices.Sort(samples)
	return OverheadSummary{P50: millis(Percentile(samples, 50)), P99: millis(Percentile(samples, 99))}
}

// WriteJSON writes r as one line of JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes r as one fixed-format summary line, key=value pairs in
// a stable order so it is as easy to grep as to read; unmeasured figures
// print as "-". cpu_s/1k_steps is the coordinators'; executors that ran in
// the load generator print executors_cpu_s/1k_steps=in_load. A run on
// several coordinators ends with coordinators=N.
func (r *Report) WriteText(w io.Writer) error {
	executorsCPU := optional(r.CPUPer1kSteps.Executors, "%.3f")
	if r.ExecutorsInProcess {
		// Counted in the load generator's figure, not unmeasured.
		executorsCPU = "in_load"
	}
	cluster := ""
	if r.Coordinators > 1 {
		cluster = fmt.Sprintf(" coordinators=%d", r.Coordinators)
	}
	_, err := fmt.Fprintf(w,
		"bench: shape=%s tasks=%d failed=%d steps=%d duration=%.1fs tasks/s=%.0f steps/s=%.0f "+
			"latency_ms(p50/p95/p99)=%.1f/%.1f/%.1f dispatch_ms(p50/p99)=%.2f/%.2f "+
			"commits/s=%s batch=%s cpu_s/1k_steps=%s executors_cpu_s/1k_steps=%s load_cpu_s/1k_steps=%s peak_rss_mb=%s duplicates=%d%s\n",
		r.Shape, r.Tasks, r.TasksFailed, r.Steps, r.DurationSec, r.TasksPerSec, r.StepsPerSec,
		r.TaskLatencyMS.P50, r.TaskLatencyMS.P95, r.TaskLatencyMS.P99,
		r.DispatchOverheadMS.P50, r.DispatchOverheadMS.P99,
		optional(r.CommitsPerSec, "%.0f"), optional(r.MeanBatchSize, "%.1f"),
		optional(r.CPUSecondsPer1kSteps, "%.3f"), executorsCPU, optional(r.CPUPer1kSteps.LoadGenerator, "%.3f"),
		optional(r.PeakRSSMB, "%.1f"), r.DuplicateDispatches, cluster)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func optional(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

// progressLine is the fixed-format line printed while a run goes on. Rates
// are averages since the start, so the last line agrees with the summary.
func progressLine(elapsed time.Duration, done, limit int64, steps int64, inFlight int64) string {
	secs := elapsed.Seconds()
	var tps, sps float64
	if secs > 0 {
		tps, sps = float64(done)/secs, float64(steps)/secs
	}
	total := "-"
	if limit > 0 {
		total = fmt.Sprint(limit)
	}
	return fmt.Sprintf("bench: elapsed=%.1fs tasks=%d/%s tasks/s=%.0f steps/s=%.0f in_flight=%d\n",
		secs, done, total, tps, sps, inFlight)
}
