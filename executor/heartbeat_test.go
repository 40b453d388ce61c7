package executor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// longHeartbeat is far longer than any test, so a heartbeat seen during one
// can only be the one sent when the stream opened.
const longHeartbeat = time.Hour

// promptly bounds the wait for the heartbeat sent at stream open. Against a
// one-hour interval any arrival inside it proves the heartbeat did not wait
// for the ticker; it is a functional bound, not a speed measurement.
const promptly = 2 * time.Second

// attemptID is a RunningStep as a comparable value.
type attemptID struct {
	taskID  string
	stepID  string
	attempt int32
}

func attemptOf(step *executorv1.ExecuteStep) attemptID {
	return attemptID{taskID: step.GetTaskId(), stepID: step.GetStepId(), attempt: step.GetAttempt()}
}

func runningOf(hb *executorv1.Heartbeat) []attemptID {
	out := make([]attemptID, 0, len(hb.GetRunning()))
	for _, rs := range hb.GetRunning() {
		out = append(out, attemptID{taskID: rs.GetTaskId(), stepID: rs.GetStepId(), attempt: rs.GetAttempt()})
	}
	return out
}

// first returns the next message on the stream, failing unless it arrives
// within d.
func (s *execStream) first(t *testing.T, d time.Duration) *executorv1.ExecuteResponse {
	t.Helper()
	select {
	case msg := <-s.msgs:
		return msg
	case <-s.ended:
		t.Fatalf("stream ended before its first message: %v", s.err)
	case <-time.After(d):
		t.Fatalf("no message within %s", d)
	}
	return nil
}

// firstHeartbeat requires the stream's next message to be a heartbeat that
// came without waiting for the heartbeat interval.
func (s *execStream) firstHeartbeat(t *testing.T) *executorv1.Heartbeat {
	t.Helper()
	msg := s.first(t, promptly)
	require.NotNil(t, msg.GetHeartbeat(), "expected a heartbeat, got %v", msg)
	return msg.GetHeartbeat()
}

func TestFirstHeartbeatIsSentWhenStreamOpens(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{HeartbeatInterval: longHeartbeat}, map[string]HandlerFunc{"block": g.handler})

	first := dialExecutor(t, s.addr).open(t)
	idle := first.firstHeartbeat(t)
	require.Empty(t, idle.GetRunning())
	require.Empty(t, idle.GetRunningStepIds())

	step := newStep("block", 2)
	first.send(t, step)
	g.awaitStart(t)

	// A second coordinator connection is told at once about the attempt
	// running for the first one.
	second := dialExecutor(t, s.addr).open(t)
	hb := second.firstHeartbeat(t)
	require.Equal(t, []attemptID{attemptOf(step)}, runningOf(hb))
	require.Equal(t, []string{step.GetStepId()}, hb.GetRunningStepIds())

	close(g.release)
	res := first.result(t)
	requireEcho(t, step, s.exec, res)
	require.NotNil(t, res.GetSuccess())
}

func TestFirstHeartbeatOfNewStreamListsStepsOfBrokenStream(t *testing.T) {
	t.Parallel()
	fc := startFakeCoordinator(t)
	g := newGate()
	s := startExecutor(t, Config{Coordinator: fc.addr, RegisterInterval: 10 * time.Millisecond, HeartbeatInterval: longHeartbeat},
		map[string]HandlerFunc{"block": g.handler})

	old := dialExecutor(t, s.addr).openAs(t, fakeCoordinatorID)
	require.Empty(t, old.firstHeartbeat(t).GetRunning())
	steps := []*executorv1.ExecuteStep{newStep("block", 3), newStep("block", 1)}
	for _, step := range steps {
		old.send(t, step)
		g.awaitStart(t)
	}
	old.cancel()
	s.awaitSessionClosed(t, fakeCoordinatorID)

	// The restarted coordinator dials back; before any interval passes it
	// learns both attempts still run here, with their task and attempt.
	restarted := dialExecutor(t, s.addr).open(t)
	hb := restarted.firstHeartbeat(t)
	require.ElementsMatch(t, []attemptID{attemptOf(steps[0]), attemptOf(steps[1])}, runningOf(hb))
	require.ElementsMatch(t, []string{steps[0].GetStepId(), steps[1].GetStepId()}, hb.GetRunningStepIds())

	// The handlers were never disturbed; their results still get back.
	close(g.release)
	got := map[string]*executorv1.StepResult{}
	for range steps {
		res := fc.awaitReport(t)
		got[res.GetStepId()] = res
	}
	for _, step := range steps {
		requireEcho(t, step, s.exec, got[step.GetStepId()])
		require.NotNil(t, got[step.GetStepId()].GetSuccess())
	}
}

func TestFirstHeartbeatFollowsPendingResults(t *testing.T) {
	t.Parallel()
	g := newGate()
	// No coordinator to report to: the pending result waits for a stream.
	s := startExecutor(t, Config{HeartbeatInterval: longHeartbeat}, map[string]HandlerFunc{"block": g.handler})
	c := dialExecutor(t, s.addr)
	old := c.open(t)
	done := newStep("block", 4)
	old.send(t, done)
	g.awaitStart(t)
	old.cancel()
	s.awaitSessionClosed(t, "")

	close(g.release)
	require.NoError(t, g.awaitCtxErr(t))
	require.Eventually(t, func() bool {
		s.exec.mu.Lock()
		defer s.exec.mu.Unlock()
		return len(s.exec.admitted) == 0 && len(s.exec.pending) == 1
	}, waitFor, time.Millisecond, "result never became pending")

	// The new stream gets the late result, then a heartbeat that no longer
	// lists it.
	next := c.open(t)
	res := next.first(t, waitFor).GetStepResult()
	require.NotNil(t, res, "the pending result comes first")
	requireEcho(t, done, s.exec, res)
	require.Empty(t, next.firstHeartbeat(t).GetRunning())
}
