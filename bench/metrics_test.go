package bench

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const exposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.34
process_resident_memory_bytes 5.1314688e+07
tasker_store_commits_total 1500
tasker_store_writes_total 24000 1700000000000

tasker_step_transitions_total{handler="noop",to="complete"} 10
tasker_step_transitions_total{handler="odd } name, \"quoted\"",to="error"} 2.5
tasker_dispatch_latency_seconds_bucket{handler="noop",le="+Inf"} 7
tasker_weird_gauge -Inf
`

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	m, err := ParseMetrics(strings.NewReader(exposition))
	require.NoError(t, err)
	require.Equal(t, 12.34, m[MetricCPU])
	require.Equal(t, 51314688.0, m[MetricRSS])
	require.Equal(t, 1500.0, m[MetricCommits])
	require.Equal(t, 24000.0, m[MetricWrites], "a trailing timestamp is not the value")
	require.Equal(t, 12.5, m["tasker_step_transitions_total"], "label sets are summed, quoted braces included")
	require.Equal(t, 7.0, m["tasker_dispatch_latency_seconds_bucket"])
	require.Equal(t, 42.0, m["go_goroutines"])
	require.Contains(t, m, "tasker_weird_gauge")
	_, ok := m["tasker_missing"]
	require.False(t, ok)
}

func TestParseMetricsRejectsMalformedSamples(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		"tasker_store_commits_total",
		"tasker_store_commits_total abc",
		`tasker_x{handler="noop" 1`,
		"tasker_x 1 2 3",
		"{a=\"b\"} 1",
	} {
		_, err := ParseMetrics(strings.NewReader(text + "\n"))
		require.Error(t, err, text)
		require.True(t, errors.Is(err, errBadSample), text)
	}
}

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
	stat := "4242 (tasker (bench) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 12 0 100 1000 200\n"
	ticks, err := parseProcStat([]byte(stat))
	require.NoError(t, err)
	require.Equal(t, uint64(325), ticks)

	_, err = parseProcStat([]byte("4242 tasker S 1"))
	require.Error(t, err)
	_, err = parseProcStat([]byte("4242 (tasker) S 1 2 3"))
	require.Error(t, err)
}

func TestParseVmHWM(t *testing.T) {
	t.Parallel()
	status := "Name:\ttasker\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n"
	n, err := parseVmHWM([]byte(status))
	require.NoError(t, err)
	require.Equal(t, int64(51200*1024), n)

	_, err = parseVmHWM([]byte("Name:\ttasker\n"))
	require.Error(t, err)
	_, err = parseVmHWM([]byte("VmHWM:\t12 MB\n"))
	require.Error(t, err)
}

func TestProcReadsThisProcess(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	_, err := ProcCPU(os.Getpid())
	require.NoError(t, err)
	rss, err := ProcPeakRSS(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, rss)

	_, err = ProcCPU(-1)
	require.ErrorIs(t, err, os.ErrNotExist)
}
