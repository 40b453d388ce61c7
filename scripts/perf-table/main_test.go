package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/bench"
)

func TestParseGhz(t *testing.T) {
	t.Parallel()
	out := `Summary:
  Count:	20000
  Requests/sec:	1956.26

Latency distribution:
  95 % in 30.12 ms 
  99 % in 39.70 ms 

Status code distribution:
  [OK]   20000 responses
`
	rate, p99, err := parseGhz(out)
	require.NoError(t, err)
	require.InDelta(t, 1956.26, rate, 1e-9)
	require.InDelta(t, 39.7, p99, 1e-9)

	_, p99, err = parseGhz("Requests/sec:\t10\n  99 % in 1.5 s \n")
	require.NoError(t, err)
	require.InDelta(t, 1500, p99, 1e-9, "seconds are converted to milliseconds")

	_, _, err = parseGhz("Summary:\n")
	require.ErrorContains(t, err, "no Requests/sec")
}

func TestParseGhzCPU(t *testing.T) {
	t.Parallel()
	out := "  [OK]   20000 responses   \n" +
		"load-create-task: CPU seconds per 1k steps (80000 steps): coordinator 0.108, executor 0.023, load generator 0.049\n"
	rep, err := parseGhzCPU(out)
	require.NoError(t, err)
	require.InDelta(t, 0.108, *rep.CPUPer1kSteps.Coordinator, 1e-9)
	require.InDelta(t, 0.023, *rep.CPUPer1kSteps.Executors, 1e-9)
	require.InDelta(t, 0.049, *rep.CPUPer1kSteps.LoadGenerator, 1e-9)
	require.Nil(t, rep.PeakRSSMB, "the ghz row has no peak RSS")

	_, err = parseGhzCPU("  [OK]   20000 responses\n")
	require.ErrorContains(t, err, "no CPU line")
}

func TestMedianPicksTheMiddleRun(t *testing.T) {
	t.Parallel()
	reps := []*bench.Report{{StepsPerSec: 3}, {StepsPerSec: 1}, {StepsPerSec: 2}, {StepsPerSec: 4}}
	steps := func(r *bench.Report) float64 { return r.StepsPerSec }
	require.Equal(t, 2.0, median(reps, steps).StepsPerSec, "the lower middle of an even count")
	require.Equal(t, 2.0, median(reps[:3], steps).StepsPerSec)
	require.Nil(t, median(nil, steps))
	xs := []float64{5.7, -7.5, 0.4}
	require.Equal(t, 0.4, medianOf(xs))
	require.Equal(t, -7.5, medianOf(xs[1:]), "the lower middle of an even count")
	require.Equal(t, []float64{5.7, -7.5, 0.4}, xs, "left in its order")
}
