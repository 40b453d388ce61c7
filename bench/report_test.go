package bench

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample is every percentile", ms(7), 99, 7 * time.Millisecond},
		{"median of odd count", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"median of even count is the lower middle", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p100 is the max", ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{"tiny p is the min", ms(1, 2, 3, 4), 0.1, time.Millisecond},
		{"p95 of 1..100", hundred, 95, 95 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99 of 1..100 plus outlier", append(ms(1, 1, 1), 1000*time.Millisecond), 99, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, Percentile(tc.sorted, tc.p))
		})
	}
}

func TestSummarizeLatencySortsAndRounds(t *testing.T) {
	t.Parallel()
	samples := []time.Duration{3 * time.Millisecond, 1234567 * time.Nanosecond, 2 * time.Millisecond}
	got := summarizeLatency(samples)
	require.Equal(t, LatencySummary{P50: 2, P95: 3, P99: 3}, got)
	require.Equal(t, 1.235, millis(1234567*time.Nanosecond), "rounded to the microsecond")
	require.Equal(t, OverheadSummary{}, summarizeOverhead(nil))
}

// requiredKeys are the keys scripts rely on.
var requiredKeys = []string{
	"tasks_per_sec", "steps_per_sec", "task_latency_ms", "dispatch_overhead_ms", "commits_per_sec",
	"mean_batch_size", "cpu_seconds_per_1k_steps", "cpu_seconds_per_1k_steps_by_process", "executors_in_process",
	"peak_rss_mb", "duplicate_dispatches",
}

func decodeReport(t *testing.T, r *Report) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, r.WriteJSON(&buf))
	require.Equal(t, 1, strings.Count(buf.String(), "\n"), "one JSON object on one line")
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	return got
}

func TestReportJSONKeys(t *testing.T) {
	t.Parallel()
	full := &Report{
		TasksPerSec: 450.5, StepsPerSec: 1802, TaskLatencyMS: LatencySummary{P50: 1, P95: 2, P99: 3},
		DispatchOverheadMS: OverheadSummary{P50: 0.5, P99: 0.9}, CommitsPerSec: ptr(120.0), MeanBatchSize: ptr(15.2),
		CPUSecondsPer1kSteps: ptr(0.21), PeakRSSMB: ptr(48.0), DuplicateDispatches: 0, Shape: "linear4", Sync: "full",
	}
	got := decodeReport(t, full)
	for _, k := range requiredKeys {
		require.Contains(t, got, k)
	}
	require.Equal(t, map[string]any{"p50": 1.0, "p95": 2.0, "p99": 3.0}, got["task_latency_ms"])
	require.Equal(t, map[string]any{"p50": 0.5, "p99": 0.9}, got["dispatch_overhead_ms"])
	require.Equal(t, 15.2, got["mean_batch_size"])
	require.Equal(t, "linear4", got["shape"])
	require.Equal(t, map[string]any{"coordinator": nil, "executors": nil, "load_generator": nil}, got["cpu_seconds_per_1k_steps_by_process"],
		"every process has its key, null when unmeasured")

	// Unmeasured figures keep their keys, as null.
	bare := decodeReport(t, &Report{Shape: "tree"})
	for _, k := range requiredKeys {
		require.Contains(t, bare, k)
	}
	for _, k := range []string{"commits_per_sec", "mean_batch_size", "cpu_seconds_per_1k_steps", "peak_rss_mb"} {
		require.Nil(t, bare[k], k)
	}
	require.NotContains(t, bare, "sync", "sync is only reported when bench knows it")
}

func TestReportText(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	r := &Report{Shape: "diamond", Tasks: 10, Steps: 70, DurationSec: 2, TasksPerSec: 5, StepsPerSec: 35, MeanBatchSize: ptr(3.25)}
	require.NoError(t, r.WriteText(&buf))
	line := buf.String()
	require.Equal(t, 1, strings.Count(line, "\n"))
	require.True(t, strings.HasPrefix(line, "bench: shape=diamond tasks=10 failed=0 steps=70 duration=2.0s tasks/s=5 steps/s=35 "), line)
	require.Contains(t, line, " commits/s=- batch=3.2 cpu_s/1k_steps=- executors_cpu_s/1k_steps=- load_cpu_s/1k_steps=- peak_rss_mb=- duplicates=0\n")

	// Each process's figure has its own key; executors that ran inside the
	// load generator say so rather than look unmeasured.
	buf.Reset()
	r.CPUSecondsPer1kSteps = ptr(0.15)
	r.CPUPer1kSteps = CPUBreakdown{Coordinator: r.CPUSecondsPer1kSteps, Executors: ptr(0.0714), LoadGenerator: ptr(0.02)}
	require.NoError(t, r.WriteText(&buf))
	require.Contains(t, buf.String(), " cpu_s/1k_steps=0.150 executors_cpu_s/1k_steps=0.071 load_cpu_s/1k_steps=0.020 ")
	buf.Reset()
	r.ExecutorsInProcess, r.CPUPer1kSteps.Executors = true, nil
	require.NoError(t, r.WriteText(&buf))
	require.Contains(t, buf.String(), " executors_cpu_s/1k_steps=in_load load_cpu_s/1k_steps=0.020 ")
}

// progressRE is the documented progress line format.
var progressRE = regexp.MustCompile(`^bench: elapsed=\d+\.\ds tasks=\d+/(\d+|-) tasks/s=\d+ steps/s=\d+ in_flight=\d+$`)

func TestProgressLine(t *testing.T) {
	t.Parallel()
	line := progressLine(4*time.Second, 1832, 10000, 7328, 500)
	require.Equal(t, "bench: elapsed=4.0s tasks=1832/10000 tasks/s=458 steps/s=1832 in_flight=500\n", line)
	require.Regexp(t, progressRE, strings.TrimSuffix(line, "\n"))
	require.Equal(t, "bench: elapsed=0.0s tasks=0/- tasks/s=0 steps/s=0 in_flight=0\n", progressLine(0, 0, 0, 0, 0))
}
