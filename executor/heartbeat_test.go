package executor

import (
	"fmt"
	"io"
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

	// The handlers were never disturbed; their results still get back. The
	// stream they came on is gone, so each result is pending: the executor
	// reports it with ReportStepResult, or hands it to the newest open stream
	// (restarted) when that call fails. Both are the protocol's paths, so
	// each result is taken from whichever one it arrives on.
	close(g.release)
	got := newResultLog(t, steps)
	deadline := time.After(waitFor)
	for got.steps() < len(steps) {
		select {
		case <-fc.reported:
			got.add(fc.takeReport(), "ReportStepResult")
		case msg := <-restarted.msgs:
			if res := msg.GetStepResult(); res != nil {
				got.add(res, "restarted stream")
			}
		case <-restarted.ended:
			t.Fatalf("the new stream ended before both results arrived: %v", restarted.err)
		case <-deadline:
			t.Fatalf("results of %d of %d steps arrived", got.steps(), len(steps))
		}
	}

	// Exactly once: stopping the executor ends both paths. Serve returns
	// after its redelivery loop stopped, and it ends restarted cleanly once
	// everything queued on it was sent, so every copy it ever delivered is
	// now in the fake coordinator's reports or in restarted's messages.
	s.stop()
	require.NoError(t, s.wait(t))
	for _, res := range fc.untakenReports() {
		got.add(res, "ReportStepResult")
	}
	select {
	case <-restarted.ended:
	case <-time.After(waitFor):
		t.Fatal("the new stream did not end at shutdown")
	}
	require.ErrorIs(t, restarted.err, io.EOF, "the executor ends its streams cleanly at shutdown")
	for drained := false; !drained; {
		select {
		case msg := <-restarted.msgs:
			if res := msg.GetStepResult(); res != nil {
				got.add(res, "restarted stream")
			}
		default:
			drained = true
		}
	}
	for _, step := range steps {
		res := got.only(step)
		requireEcho(t, step, s.exec, res)
		require.NotNil(t, res.GetSuccess())
		require.JSONEq(t, fmt.Sprintf(`{"attempt": %d}`, step.GetAttempt()), string(res.GetSuccess().GetResults()))
	}
}

// resultLog records every copy of the results of steps, with the path each
// copy came on.
type resultLog struct {
	t      *testing.T
	want   map[string]bool
	copies map[string][]*executorv1.StepResult
	paths  map[string][]string
}

func newResultLog(t *testing.T, steps []*executorv1.ExecuteStep) *resultLog {
	l := &resultLog{t: t, want: map[string]bool{}, copies: map[string][]*executorv1.StepResult{}, paths: map[string][]string{}}
	for _, step := range steps {
		l.want[step.GetStepId()] = true
	}
	return l
}

// add records res, which must answer one of the steps.
func (l *resultLog) add(res *executorv1.StepResult, path string) {
	l.t.Helper()
	id := res.GetStepId()
	require.True(l.t, l.want[id], "a result for a step not sent in this test, on the %s: %v", path, res)
	l.copies[id] = append(l.copies[id], res)
	l.paths[id] = append(l.paths[id], path)
}

// steps counts the steps with at least one result.
func (l *resultLog) steps() int { return len(l.copies) }

// only returns step's result, requiring that exactly one copy arrived.
func (l *resultLog) only(step *executorv1.ExecuteStep) *executorv1.StepResult {
	l.t.Helper()
	id := step.GetStepId()
	require.Len(l.t, l.copies[id], 1, "results of step %s, over paths %v", id, l.paths[id])
	return l.copies[id][0]
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
