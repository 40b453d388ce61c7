package executor

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// waitFor bounds every wait in these tests; it is a hang guard, not a speed
// assertion.
const waitFor = 10 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger discards logs unless TASKER_TEST_LOG is set, so failures can be
// debugged without flooding normal runs.
func testLogger() *slog.Logger {
	if os.Getenv("TASKER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// served is an executor running Serve on a real 127.0.0.1 socket.
type served struct {
	exec *Executor
	addr string
	// stop cancels Serve's ctx; done is closed when Serve returned, with its
	// error in err.
	stop context.CancelFunc
	done chan struct{}
	err  error
	// closed receives the coordinator id of every stream the executor has
	// finished closing (see hooks.sessionClosed).
	closed chan string
	// maxActive is the most handlers the executor ever ran at once, as it
	// counted them itself (hooks.runStarted); queued receives a value each
	// time a step waits for a free slot (hooks.stepQueued).
	maxActive atomic.Int64
	queued    chan struct{}
	// waiting receives a value each time a handler goroutine finished a run
	// and is about to wait for the next (hooks.workerWaiting).
	waiting chan struct{}
}

// startExecutor builds an executor with handlers and serves it until the
// test ends (or stop is called), requiring a clean shutdown.
func startExecutor(t testing.TB, cfg Config, handlers map[string]HandlerFunc) *served {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	e, err := New(cfg)
	require.NoError(t, err)
	for name, h := range handlers {
		require.NoError(t, e.Handle(name, h))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{exec: e, addr: lis.Addr().String(), stop: cancel, done: make(chan struct{}),
		closed: make(chan string, 64), queued: make(chan struct{}, 64), waiting: make(chan struct{}, 64)}
	e.hooks.sessionClosed = func(id string) {
		select {
		case s.closed <- id:
		default:
		}
	}
	e.hooks.runStarted = func(active int) {
		for {
			old := s.maxActive.Load()
			if int64(active) <= old || s.maxActive.CompareAndSwap(old, int64(active)) {
				return
			}
		}
	}
	e.hooks.stepQueued = func() {
		select {
		case s.queued <- struct{}{}:
		default:
		}
	}
	e.hooks.workerWaiting = func() {
		select {
		case s.waiting <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(s.done)
		s.err = e.Serve(ctx, lis)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(waitFor + DefaultShutdownTimeout):
			t.Fatal("Serve did not return")
		}
		require.NoError(t, s.err)
	})
	return s
}

// wait waits for Serve to return and gives its error.
func (s *served) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(waitFor):
		t.Fatal("Serve did not return")
		return nil
	}
}

// awaitSessionClosed waits until the executor has closed a stream opened by
// the coordinator named id: from then on it knows the stream is gone, and
// results it finishes go to ReportStepResult or the next stream.
func (s *served) awaitSessionClosed(t *testing.T, id string) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case got := <-s.closed:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("the executor never closed the stream of coordinator %q", id)
		}
	}
}

// awaitQueued waits until a step is admitted to wait for a free slot.
func (s *served) awaitQueued(t *testing.T) {
	t.Helper()
	select {
	case <-s.queued:
	case <-time.After(waitFor):
		t.Fatal("no step was queued")
	}
}

// coordinator is the test's stand-in for the coordinator's client side:
// it dials the executor the way the real one does.
type coordinator struct {
	client executorv1.ExecutorServiceClient
}

func dialExecutor(t testing.TB, addr string) *coordinator {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &coordinator{client: executorv1.NewExecutorServiceClient(conn)}
}

// execStream is one open Execute stream with a goroutine reading it.
type execStream struct {
	stream grpc.BidiStreamingClient[executorv1.ExecuteRequest, executorv1.ExecuteResponse]
	cancel context.CancelFunc
	msgs   chan *executorv1.ExecuteResponse
	// ended is closed when the read goroutine stopped; err is why.
	ended chan struct{}
	err   error
}

func (c *coordinator) open(t testing.TB) *execStream {
	t.Helper()
	return c.openAs(t, "")
}

// openAs opens a stream naming itself as coordinator id, as real
// coordinators do ("" names none).
func (c *coordinator) openAs(t testing.TB, id string) *execStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	callCtx := ctx
	if id != "" {
		callCtx = metadata.AppendToOutgoingContext(ctx, CoordinatorIDMetadata, id)
	}
	stream, err := c.client.Execute(callCtx)
	require.NoError(t, err)
	s := &execStream{stream: stream, cancel: cancel, msgs: make(chan *executorv1.ExecuteResponse, 256), ended: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(s.ended)
		for {
			msg, err := stream.Recv()
			if err != nil {
				s.err = err
				return
			}
			select {
			case s.msgs <- msg:
			case <-ctx.Done():
				s.err = ctx.Err()
				return
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return s
}

func (s *execStream) send(t testing.TB, step *executorv1.ExecuteStep) {
	t.Helper()
	require.NoError(t, s.stream.Send(&executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_ExecuteStep{ExecuteStep: step}}))
}

func (s *execStream) cancelStep(t *testing.T, step *executorv1.ExecuteStep, reason string) {
	t.Helper()
	require.NoError(t, s.stream.Send(&executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_CancelStep{CancelStep: &executorv1.CancelStep{
		TaskId: step.GetTaskId(), StepId: step.GetStepId(), Attempt: step.GetAttempt(), Reason: reason,
	}}}))
}

// next returns the next message matching keep, skipping the others.
func (s *execStream) next(t testing.TB, keep func(*executorv1.ExecuteResponse) bool) *executorv1.ExecuteResponse {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case msg := <-s.msgs:
			if keep(msg) {
				return msg
			}
		case <-s.ended:
			// Drain what was read before the stream ended.
			select {
			case msg := <-s.msgs:
				if keep(msg) {
					return msg
				}
				continue
			default:
			}
			t.Fatalf("stream ended while waiting: %v", s.err)
		case <-deadline:
			t.Fatal("timed out waiting for a message from the executor")
		}
	}
}

// result returns the next step result.
func (s *execStream) result(t testing.TB) *executorv1.StepResult {
	t.Helper()
	return s.next(t, func(m *executorv1.ExecuteResponse) bool { return m.GetStepResult() != nil }).GetStepResult()
}

// awaitEnd waits for the executor to end the stream and returns why.
func (s *execStream) awaitEnd(t *testing.T) error {
	t.Helper()
	for {
		select {
		case <-s.msgs:
		case <-s.ended:
			return s.err
		case <-time.After(waitFor):
			t.Fatal("stream did not end")
		}
	}
}

// newStep builds an ExecuteStep with fresh ids.
func newStep(handler string, attempt int32) *executorv1.ExecuteStep {
	return &executorv1.ExecuteStep{
		TaskId:   "task-" + uuid.NewString(),
		StepId:   "step-" + uuid.NewString(),
		StepName: handler + "_step",
		Handler:  handler,
		Attempt:  attempt,
	}
}

// requireEcho checks a result answers step and came from e.
func requireEcho(t *testing.T, step *executorv1.ExecuteStep, e *Executor, res *executorv1.StepResult) {
	t.Helper()
	require.Equal(t, step.GetTaskId(), res.GetTaskId())
	require.Equal(t, step.GetStepId(), res.GetStepId())
	require.Equal(t, step.GetAttempt(), res.GetAttempt())
	require.Equal(t, e.ID(), res.GetExecutorId())
}

// gate lets a test hold a handler until it says so and see that it started.
type gate struct {
	started chan struct{}
	release chan struct{}
	// ctxErr receives the handler ctx's error when the handler returns.
	ctxErr chan error
}

func newGate() *gate {
	return &gate{started: make(chan struct{}, 16), release: make(chan struct{}), ctxErr: make(chan error, 16)}
}

// handler blocks until release (succeeding) or until its ctx ends (failing
// with the ctx error).
func (g *gate) handler(ctx context.Context, req *Request) (any, error) {
	g.started <- struct{}{}
	select {
	case <-g.release:
		g.ctxErr <- ctx.Err()
		return map[string]int{"attempt": req.Attempt}, nil
	case <-ctx.Done():
		g.ctxErr <- ctx.Err()
		return nil, ctx.Err()
	}
}

func (g *gate) awaitStart(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(waitFor):
		t.Fatal("handler did not start")
	}
}

func (g *gate) awaitCtxErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-g.ctxErr:
		return err
	case <-time.After(waitFor):
		t.Fatal("handler did not return")
		return nil
	}
}

// fakeCoordinator serves CoordinatorService and records what executors call.
type fakeCoordinator struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	addr string

	mu        sync.Mutex
	registers []string
	reports   []*executorv1.StepResult
	// failReports makes that many ReportStepResult calls fail first.
	failReports int
	// reported receives one value per accepted report, sent after the
	// report was appended to reports; taken counts the reports handed out
	// by takeReport, so the i-th value received pairs with reports[i].
	reported chan struct{}
	taken    int
}

func startFakeCoordinator(t *testing.T) *fakeCoordinator {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeCoordinator{addr: lis.Addr().String(), reported: make(chan struct{}, 64)}
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, f)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(lis) })
	t.Cleanup(func() {
		srv.Stop()
		wg.Wait()
	})
	return f
}

func (f *fakeCoordinator) RegisterExecutor(_ context.Context, req *coordinatorv1.RegisterExecutorRequest) (*coordinatorv1.RegisterExecutorResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers = append(f.registers, req.GetAddress())
	return &coordinatorv1.RegisterExecutorResponse{CoordinatorId: fakeCoordinatorID}, nil
}

// fakeCoordinatorID is the id the fake coordinator gives itself; streams
// opened as it (openAs) are the ones the executor's register loop waits on.
const fakeCoordinatorID = "fake"

var errFakeDown = errors.New("fake coordinator unavailable")

func (f *fakeCoordinator) ReportStepResult(_ context.Context, req *coordinatorv1.ReportStepResultRequest) (*coordinatorv1.ReportStepResultResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failReports > 0 {
		f.failReports--
		return nil, errFakeDown
	}
	f.reports = append(f.reports, req.GetResult())
	f.reported <- struct{}{}
	return &coordinatorv1.ReportStepResultResponse{Applied: true}, nil
}

func (f *fakeCoordinator) registerCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.registers)
}

func (f *fakeCoordinator) registeredAddresses() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.registers...)
}

// awaitReport waits for the next accepted ReportStepResult and returns it.
func (f *fakeCoordinator) awaitReport(t *testing.T) *executorv1.StepResult {
	t.Helper()
	select {
	case <-f.reported:
	case <-time.After(waitFor):
		t.Fatal("no ReportStepResult call")
	}
	return f.takeReport()
}

// takeReport returns the oldest accepted report not yet taken; call it once
// for each value received from reported. It must not return the latest
// report instead: when two reports arrive before the first value is
// received, that would hand out the second one twice and never the first.
func (f *fakeCoordinator) takeReport() *executorv1.StepResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.reports[f.taken]
	f.taken++
	return res
}

// untakenReports returns the accepted reports takeReport has not handed out.
func (f *fakeCoordinator) untakenReports() []*executorv1.StepResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*executorv1.StepResult(nil), f.reports[f.taken:]...)
}

// awaitRegisters waits until at least n RegisterExecutor calls were made.
func (f *fakeCoordinator) awaitRegisters(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return f.registerCount() >= n }, waitFor, 5*time.Millisecond)
}
