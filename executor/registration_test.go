package executor

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRegistersUntilStreamOpensAndAgainAfterItCloses(t *testing.T) {
	t.Parallel()
	fc := startFakeCoordinator(t)
	g := newGate()
	s := startExecutor(t, Config{Coordinator: fc.addr, RegisterInterval: 10 * time.Millisecond},
		map[string]HandlerFunc{"block": g.handler})

	// Registration carries the listener's address and repeats while no
	// stream is open, so a coordinator that missed one call still finds us.
	fc.awaitRegisters(t, 2)
	for _, addr := range fc.registeredAddresses() {
		require.Equal(t, s.addr, addr)
	}

	// The stream names itself as the coordinator registered with, so the
	// executor stops registering while it is open.
	stream := dialExecutor(t, s.addr).openAs(t, fakeCoordinatorID)
	step := newStep("block", 1)
	stream.send(t, step)
	g.awaitStart(t)

	// Breaking the stream while the handler runs: the executor registers
	// again, the handler keeps running and its result goes out through
	// ReportStepResult.
	stream.cancel()
	s.awaitSessionClosed(t, fakeCoordinatorID)
	fc.awaitRegisters(t, fc.registerCount()+1)

	close(g.release)
	require.NoError(t, g.awaitCtxErr(t), "a broken stream must not cancel the handler")
	res := fc.awaitReport(t)
	requireEcho(t, step, s.exec, res)
	require.JSONEq(t, `{"attempt": 1}`, string(res.GetSuccess().GetResults()))
}

func TestReportStepResultIsRetried(t *testing.T) {
	t.Parallel()
	fc := startFakeCoordinator(t)
	fc.mu.Lock()
	fc.failReports = 2
	fc.mu.Unlock()
	g := newGate()
	s := startExecutor(t, Config{Coordinator: fc.addr, RegisterInterval: 10 * time.Millisecond},
		map[string]HandlerFunc{"block": g.handler})

	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("block", 5)
	stream.send(t, step)
	g.awaitStart(t)
	stream.cancel()
	close(g.release)

	res := fc.awaitReport(t)
	requireEcho(t, step, s.exec, res)
	require.NotNil(t, res.GetSuccess())
	fc.mu.Lock()
	defer fc.mu.Unlock()
	require.Zero(t, fc.failReports, "the first two reports failed and were retried")
}

func TestResultRedeliveredOnNextStream(t *testing.T) {
	t.Parallel()
	g := newGate()
	// No coordinator to report to: the next stream is the only way back.
	s := startExecutor(t, Config{}, map[string]HandlerFunc{"block": g.handler})
	c := dialExecutor(t, s.addr)
	first := c.open(t)
	step := newStep("block", 2)
	first.send(t, step)
	g.awaitStart(t)
	first.cancel()
	first.awaitEnd(t)

	close(g.release)
	require.NoError(t, g.awaitCtxErr(t))
	second := c.open(t)
	res := second.result(t)
	requireEcho(t, step, s.exec, res)
	require.JSONEq(t, `{"attempt": 2}`, string(res.GetSuccess().GetResults()))
}

func TestHalfClosedStreamStaysForRunningResults(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{}, map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("block", 1)
	stream.send(t, step)
	g.awaitStart(t)
	require.NoError(t, stream.stream.CloseSend())

	close(g.release)
	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	require.NotNil(t, res.GetSuccess())
	require.ErrorIs(t, stream.awaitEnd(t), io.EOF, "stream ends cleanly once nothing is left to send")
}
