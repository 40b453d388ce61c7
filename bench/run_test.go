package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCoordinator is a real coordinator on a SQLite file in t.TempDir(),
// serving gRPC and a /metrics like the coordinator command's on loopback.
type testCoordinator struct {
	addr, metricsURL string
}

func startTestCoordinator(t *testing.T) testCoordinator {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "bench.db")})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricCommits, Help: "commits"},
			func() float64 { return float64(st.Stats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricWrites, Help: "writes"},
			func() float64 { return float64(st.Stats().Requests) }),
	)
	coord, err := coordinator.New(coordinator.Config{Store: st, Registerer: reg})
	require.NoError(t, err)
	require.NoError(t, coord.Start(ctx))

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(coord.ServerOptions()...)
	coord.Register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hsrv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	hserved := make(chan error, 1)
	go func() { hserved <- hsrv.Serve(hlis) }()

	t.Cleanup(func() {
		require.NoError(t, hsrv.Close())
		require.ErrorIs(t, <-hserved, http.ErrServerClosed)
		require.NoError(t, coord.Stop(context.Background()))
		srv.Stop()
		require.NoError(t, <-served)
		require.NoError(t, st.Close())
	})
	return testCoordinator{addr: lis.Addr().String(), metricsURL: "http://" + hlis.Addr().String() + "/metrics"}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunLinear4InProcess(t *testing.T) {
	t.Parallel()
	tc := startTestCoordinator(t)
	httpClient := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(httpClient.CloseIdleConnections)
	var progress syncBuffer
	rep, err := Run(t.Context(), Config{
		Coordinator: tc.addr, MetricsURL: tc.metricsURL, PID: os.Getpid(), Sync: "full",
		Shape: "linear4", Tasks: 20, Concurrency: 4, Executors: 2, ExecutorCapacity: 8,
		Progress: &progress, ProgressInterval: 5 * time.Millisecond, HTTPClient: httpClient,
	})
	require.NoError(t, err)

	require.Equal(t, int64(20), rep.Tasks)
	require.Zero(t, rep.TasksFailed)
	require.Equal(t, int64(80), rep.Steps, "4 steps per task, each run once")
	require.Zero(t, rep.DuplicateDispatches)
	require.Equal(t, 60, rep.DispatchSamples, "every non-root step of every task, all 20 tasks being sampled")
	require.Equal(t, "linear4", rep.Shape)
	require.Equal(t, 2, rep.Executors)
	require.Equal(t, 1, rep.Coordinators)
	require.Nil(t, rep.PerCoordinator, "no breakdown of a single coordinator")

	// The store committed at least the 20 creations and 80 results, in
	// batches of at least one write.
	require.NotNil(t, rep.CommitsPerSec)
	require.NotNil(t, rep.MeanBatchSize)
	require.GreaterOrEqual(t, *rep.MeanBatchSize, 1.0)
	require.NotNil(t, rep.CPUSecondsPer1kSteps)
	require.Equal(t, rep.CPUSecondsPer1kSteps, rep.CPUPer1kSteps.Coordinator)
	require.True(t, rep.ExecutorsInProcess)
	require.Nil(t, rep.CPUPer1kSteps.Executors, "executors in this process are in the load generator's figure")
	require.NotNil(t, rep.CPUPer1kSteps.LoadGenerator)
	require.NotNil(t, rep.PeakRSSMB)
	require.Positive(t, *rep.PeakRSSMB)
	require.LessOrEqual(t, rep.TaskLatencyMS.P50, rep.TaskLatencyMS.P95)
	require.LessOrEqual(t, rep.TaskLatencyMS.P95, rep.TaskLatencyMS.P99)
	require.LessOrEqual(t, rep.DispatchOverheadMS.P50, rep.DispatchOverheadMS.P99)

	for line := range strings.Lines(progress.String()) {
		require.Regexp(t, progressRE, strings.TrimSuffix(line, "\n"))
		require.Contains(t, line, "/20 ")
	}

	// A second run against the same store registers the same template
	// again (a no-op) and counts only its own tasks and steps; it learns of
	// their ends from a WatchTask stream each.
	rep, err = Run(t.Context(), Config{Coordinator: tc.addr, Shape: "linear4", Tasks: 5, Concurrency: 2, Completions: CompletionsWatch})
	require.NoError(t, err)
	require.Equal(t, int64(5), rep.Tasks)
	require.Equal(t, int64(20), rep.Steps)
	require.Nil(t, rep.CommitsPerSec, "no metrics URL, no commit figures")
	require.Nil(t, rep.CPUSecondsPer1kSteps)
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{},
		{Coordinator: "127.0.0.1:9", Tasks: -1},
		{Coordinator: "127.0.0.1:9", Tasks: 0},
		{Coordinator: "127.0.0.1:9", Tasks: 1, Shape: "spiral"},
		{Coordinator: "127.0.0.1:9", Tasks: 1, Coordinators: []Target{{MetricsURL: "http://127.0.0.1:9/metrics"}}},
		{Coordinator: "127.0.0.1:9", Tasks: 1, Completions: "poll"},
		{Coordinator: "127.0.0.1:9", Tasks: 1, ExecutorBinary: "tasker", ExecutorServerOptions: []grpc.ServerOption{grpc.MaxConcurrentStreams(1)}},
	} {
		_, err := Run(t.Context(), cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}

// buildTasker builds the tasker binary into t.TempDir().
func buildTasker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tasker")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/tasker-go/tasker/cmd/tasker")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// TestStartChild runs the real tasker binary as the child coordinator.
func TestStartChild(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the tasker binary")
	}
	bin := buildTasker(t)

	db := filepath.Join(t.TempDir(), "child.db")
	var output syncBuffer
	child, err := StartChild(t.Context(), ChildConfig{Binary: bin, DB: db, Sync: "normal", Output: &output, Pprof: true})
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = child.Stop(10 * time.Second)
		}
	})
	httpClient := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(httpClient.CloseIdleConnections)
	// Every process of the run is its own: the coordinator, two executor
	// processes of the same binary, and this one.
	profiles := t.TempDir()
	rep, err := Run(t.Context(), Config{
		Coordinator: child.Addr, MetricsURL: child.MetricsURL, PID: child.PID, PprofURL: child.PprofURL, HTTPClient: httpClient,
		Shape: "diamond", Tasks: 10, Concurrency: 5, Executors: 2, ExecutorBinary: bin, ExecutorOutput: &output,
		ProfileDir: profiles,
	})
	require.NoError(t, err, output.String())
	require.Equal(t, int64(70), rep.Steps)
	require.Zero(t, rep.DuplicateDispatches)
	require.Equal(t, 60, rep.DispatchSamples, "six non-root steps in each of 10 tasks: the executor processes' receive times are read back")
	require.NotNil(t, rep.MeanBatchSize)
	require.NotNil(t, rep.PeakRSSMB)
	require.False(t, rep.ExecutorsInProcess)
	for name, v := range map[string]*float64{
		"coordinator": rep.CPUPer1kSteps.Coordinator, "executors": rep.CPUPer1kSteps.Executors, "load generator": rep.CPUPer1kSteps.LoadGenerator,
	} {
		require.NotNil(t, v, name)
	}
	for _, name := range []string{"load-generator.pprof", "executor-0.pprof", "executor-1.pprof", "coordinator-0-001.pprof"} {
		require.Contains(t, rep.Profiles, filepath.Join(profiles, name))
		info, err := os.Stat(filepath.Join(profiles, name))
		require.NoError(t, err)
		require.Positive(t, info.Size(), name)
	}

	stopped = true
	require.NoError(t, child.Stop(10*time.Second), output.String())
	require.NoError(t, child.Stop(time.Second), "stopping twice is harmless")
	_, err = os.Stat(db)
	require.NoError(t, err, "the store the child was given is kept")

	_, err = StartChild(t.Context(), ChildConfig{Binary: filepath.Join(t.TempDir(), "missing"), DB: db})
	require.Error(t, err)
	_, err = StartChild(t.Context(), ChildConfig{Binary: bin, DB: filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), ReadyTimeout: 10 * time.Second})
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "a child that cannot open its store exits, and StartChild says so: %v", err)
}
