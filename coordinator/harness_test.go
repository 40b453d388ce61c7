package coordinator_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	"github.com/tasker-go/tasker/executor/builtin"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store/sqlite"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// TestMain checks that no test leaves a goroutine behind: a stopped
// coordinator (and everything the tests start with it) has ended all of
// its own.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness is a real coordinator on a real SQLite file, served over gRPC on
// a loopback port, with a client connected to it.
type harness struct {
	t      testing.TB
	ctx    context.Context
	store  *sqlite.Store
	coord  *coordinator.Coordinator
	addr   string
	client coordinatorv1.CoordinatorServiceClient
	log    *slog.Logger
}

type harnessConfig struct {
	grace time.Duration
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TASKER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newHarness(t testing.TB, cfgs ...harnessConfig) *harness {
	t.Helper()
	var cfg harnessConfig
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	st := openSQLite(t)
	h := serveCoordinator(t, coordinator.Config{Store: st, ExecutorGrace: cfg.grace}, nil)
	h.store = st
	return h
}

// openSQLite opens a store on a new SQLite file, closed when the test ends.
func openSQLite(t testing.TB) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "tasker.db"), Logger: testLogger(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// serveCoordinator starts a coordinator with cfg (cfg.Store is required; the
// logger defaults to the tests') and serves it over gRPC on lis, or on a
// new loopback port when lis is nil. It is stopped when the test ends;
// the store is the caller's.
func serveCoordinator(t testing.TB, cfg coordinator.Config, lis net.Listener) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if lis == nil {
		var err error
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
	}
	coord, err := coordinator.New(cfg)
	require.NoError(t, err)
	require.NoError(t, coord.Start(ctx))
	srv := grpc.NewServer(coord.ServerOptions()...)
	coord.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cc.Close()
		srv.Stop()
		// No wait for attempts still in flight (a fake executor may hold
		// one for ever); Stop still waits for its own goroutines.
		stopNow, cancel := context.WithCancel(context.Background())
		cancel()
		_ = coord.Stop(stopNow)
	})
	return &harness{t: t, ctx: ctx, coord: coord, addr: lis.Addr().String(), client: coordinatorv1.NewCoordinatorServiceClient(cc), log: testLogger(t)}
}

// metricValue reads one counter or gauge from reg, selected by its name and
// label pairs (name, value, ...); 0 if it has not been recorded.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// startExecutor runs an executor with the built-in handlers plus extra ones,
// registered with the harness's coordinator, and waits until it is
// connected. The returned function stops it.
func (h *harness) startExecutor(capacity int, extra map[string]executor.HandlerFunc) (id string, stop func()) {
	t := h.t
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ex, err := executor.New(executor.Config{
		Capacity: capacity, Coordinator: h.addr, Logger: h.log,
		RegisterInterval: 50 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, builtin.Register(ex))
	for name, fn := range extra {
		require.NoError(t, ex.Handle(name, fn))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ex.Serve(ctx, lis)
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	require.Eventually(t, func() bool {
		resp, err := h.client.ListExecutors(h.ctx, &coordinatorv1.ListExecutorsRequest{})
		if err != nil {
			return false
		}
		for _, e := range resp.GetExecutors() {
			if e.GetId() == ex.ID() && e.GetConnected() {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	return ex.ID(), stop
}

// apply registers a template written in YAML.
func (h *harness) apply(yaml string) *coordinatorv1.TaskTemplate {
	h.t.Helper()
	tmpl, err := template.Parse([]byte(yaml))
	require.NoError(h.t, err)
	p, err := templatepb.ToProto(tmpl)
	require.NoError(h.t, err)
	resp, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: p})
	require.NoError(h.t, err)
	return resp.GetTemplate()
}

func (h *harness) create(ns, name string, ctx map[string]any, opts ...func(*coordinatorv1.CreateTaskRequest)) *coordinatorv1.Task {
	h.t.Helper()
	s, err := structpb.NewStruct(ctx)
	require.NoError(h.t, err)
	req := &coordinatorv1.CreateTaskRequest{Namespace: ns, Name: name, Context: s}
	for _, o := range opts {
		o(req)
	}
	resp, err := h.client.CreateTask(h.ctx, req)
	require.NoError(h.t, err)
	require.True(h.t, resp.GetCreated())
	return resp.GetTask()
}

func (h *harness) get(id string) *coordinatorv1.Task {
	h.t.Helper()
	resp, err := h.client.GetTask(h.ctx, &coordinatorv1.GetTaskRequest{Id: id})
	require.NoError(h.t, err)
	return resp.GetTask()
}

// waitState polls until the task is in want, failing with its steps if it
// does not get there.
func (h *harness) waitState(id string, want coordinatorv1.State) *coordinatorv1.Task {
	h.t.Helper()
	var last *coordinatorv1.Task
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := h.client.GetTask(h.ctx, &coordinatorv1.GetTaskRequest{Id: id})
		switch {
		case status.Code(err) == codes.Unavailable:
			// The coordinator is restarting (tests crash and start it);
			// the client reconnects on its own.
		case err != nil:
			require.NoError(h.t, err)
		default:
			last = resp.GetTask()
			if last.GetState() == want {
				return last
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("task %s is %s, want %s; steps: %v", id, last.GetState(), want, stepSummary(last))
	return nil
}

func stepSummary(t *coordinatorv1.Task) map[string]string {
	out := map[string]string{}
	for _, s := range t.GetSteps() {
		out[s.GetName()] = s.GetState().String() + " " + s.GetError().GetMessage()
	}
	return out
}

func step(t *coordinatorv1.Task, name string) *coordinatorv1.Step {
	for _, s := range t.GetSteps() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// span is when a step's last attempt started and finished, from its stored
// transitions.
type span struct{ start, end time.Time }

func spans(t *testing.T, task *coordinatorv1.Task) map[string]span {
	t.Helper()
	out := map[string]span{}
	for _, s := range task.GetSteps() {
		var sp span
		for _, tr := range s.GetTransitions() {
			switch tr.GetToState() {
			case coordinatorv1.State_STATE_IN_PROGRESS:
				sp.start = tr.GetAt().AsTime()
			case coordinatorv1.State_STATE_COMPLETE, coordinatorv1.State_STATE_RESOLVED_MANUALLY:
				sp.end = tr.GetAt().AsTime()
			}
		}
		out[s.GetName()] = sp
	}
	return out
}

// requireParentsFirst asserts from the stored transitions that no step
// started before every one of its parents had completed.
func requireParentsFirst(t *testing.T, task *coordinatorv1.Task) {
	t.Helper()
	sp := spans(t, task)
	for _, s := range task.GetSteps() {
		require.False(t, sp[s.GetName()].start.IsZero(), "step %s never started", s.GetName())
		for _, p := range s.GetDependsOn() {
			require.False(t, sp[p].end.IsZero(), "parent %s of %s never completed", p, s.GetName())
			require.False(t, sp[s.GetName()].start.Before(sp[p].end),
				"step %s started at %s before parent %s completed at %s", s.GetName(), sp[s.GetName()].start, p, sp[p].end)
		}
	}
}

// requireOverlap asserts that the named steps ran at the same time: each
// started before all the others had finished.
func requireOverlap(t *testing.T, task *coordinatorv1.Task, names ...string) {
	t.Helper()
	sp := spans(t, task)
	latestStart, earliestEnd := time.Time{}, time.Time{}
	for _, n := range names {
		s := sp[n]
		if s.start.After(latestStart) {
			latestStart = s.start
		}
		if earliestEnd.IsZero() || s.end.Before(earliestEnd) {
			earliestEnd = s.end
		}
	}
	require.True(t, latestStart.Before(earliestEnd), "steps %v did not overlap: last start %s, first end %s", names, latestStart, earliestEnd)
}
