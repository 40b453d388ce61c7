package executor

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// awaitShuttingDown sends noop steps until the executor refuses one because
// it is shutting down, and returns that refusal.
func awaitShuttingDown(t *testing.T, stream *execStream) *executorv1.StepResult {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		step := newStep("noop", 1)
		stream.send(t, step)
		res := stream.result(t)
		require.Equal(t, step.GetStepId(), res.GetStepId())
		if res.GetFailure().GetErrorClass() == ClassShuttingDown {
			return res
		}
		require.NotNil(t, res.GetSuccess(), "before shutdown the noop succeeds")
	}
	t.Fatal("executor never refused a step while shutting down")
	return nil
}

func noop(context.Context, *Request) (any, error) { return nil, nil }

func TestGracefulShutdownWaitsForRunningHandler(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{}, map[string]HandlerFunc{"block": g.handler, "noop": noop})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("block", 1)
	stream.send(t, step)
	g.awaitStart(t)

	s.stop()
	refusal := awaitShuttingDown(t, stream)
	require.False(t, refusal.GetFailure().GetPermanent(), "a refused step must be retried elsewhere")
	select {
	case <-s.done:
		t.Fatal("Serve returned while a handler was still running")
	default:
	}

	close(g.release)
	require.NoError(t, g.awaitCtxErr(t), "within ShutdownTimeout the handler is not cancelled")
	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	require.NotNil(t, res.GetSuccess())
	require.NoError(t, s.wait(t))
	require.ErrorIs(t, stream.awaitEnd(t), io.EOF, "the executor ends its streams cleanly")
}

func TestShutdownCancelsHandlersAfterTimeout(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{ShutdownTimeout: 50 * time.Millisecond}, map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("block", 1)
	stream.send(t, step)
	g.awaitStart(t)

	s.stop()
	require.ErrorIs(t, g.awaitCtxErr(t), context.Canceled)
	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	f := res.GetFailure()
	require.NotNil(t, f)
	require.Equal(t, ClassCancelled, f.GetErrorClass())
	require.False(t, f.GetPermanent())
	require.Contains(t, f.GetMessage(), "shutting down")
	require.NoError(t, s.wait(t))
}

// TestShutdownReportsResultOfBrokenStream: a handler whose stream broke
// finishes during shutdown; Serve must not return before its result is
// reported. The test waits for the executor itself to have closed the
// stream: before that, the result could still be sent on the dying stream
// (a Send that succeeds locally), which is another path and would leave
// nothing to report.
func TestShutdownReportsResultOfBrokenStream(t *testing.T) {
	t.Parallel()
	fc := startFakeCoordinator(t)
	g := newGate()
	s := startExecutor(t, Config{Coordinator: fc.addr, RegisterInterval: 10 * time.Millisecond},
		map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).openAs(t, fakeCoordinatorID)
	step := newStep("block", 3)
	stream.send(t, step)
	g.awaitStart(t)
	stream.cancel()
	s.awaitSessionClosed(t, fakeCoordinatorID)

	s.stop()
	close(g.release)
	require.NoError(t, s.wait(t))

	// Serve returned only after the result was reported.
	fc.mu.Lock()
	defer fc.mu.Unlock()
	require.Len(t, fc.reports, 1)
	requireEcho(t, step, s.exec, fc.reports[0])
	require.NotNil(t, fc.reports[0].GetSuccess())
}

func TestShutdownHandsBackHandlerOfBrokenStream(t *testing.T) {
	t.Parallel()
	fc := startFakeCoordinator(t)
	g := newGate()
	s := startExecutor(t, Config{Coordinator: fc.addr, RegisterInterval: 10 * time.Millisecond, ShutdownTimeout: 50 * time.Millisecond},
		map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).openAs(t, fakeCoordinatorID)
	step := newStep("block", 2)
	stream.send(t, step)
	g.awaitStart(t)
	stream.cancel()
	s.awaitSessionClosed(t, fakeCoordinatorID)

	// The handler respects its ctx but is never released: only the
	// shutdown's cancellation ends it, and with no stream left its
	// retryable failure must be reported before Serve returns.
	s.stop()
	require.ErrorIs(t, g.awaitCtxErr(t), context.Canceled)
	require.NoError(t, s.wait(t))

	fc.mu.Lock()
	defer fc.mu.Unlock()
	require.Len(t, fc.reports, 1)
	res := fc.reports[0]
	requireEcho(t, step, s.exec, res)
	f := res.GetFailure()
	require.NotNil(t, f)
	require.Equal(t, ClassCancelled, f.GetErrorClass())
	require.False(t, f.GetPermanent(), "a handed-back step must be retried elsewhere")
	require.Contains(t, f.GetMessage(), "shutting down")
}

func TestServeReturnsListenerError(t *testing.T) {
	t.Parallel()
	e, err := New(Config{Logger: testLogger()})
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, lis.Close())
	require.Error(t, e.Serve(context.Background(), lis))
}
