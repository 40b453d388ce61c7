package executor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

func TestSplitCapacity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		capacity int
		busy     int
		inflight map[string]int
		want     map[string]int
	}{
		{"alone gets all", 16, 0, map[string]int{"a": 0}, map[string]int{"a": 16}},
		{"alone and busy keeps all", 16, 16, map[string]int{"a": 16}, map[string]int{"a": 16}},
		{"two idle split evenly", 16, 0, map[string]int{"a": 0, "b": 0}, map[string]int{"a": 8, "b": 8}},
		{"busy keeps its running and half the free", 16, 8, map[string]int{"a": 8, "b": 0}, map[string]int{"a": 12, "b": 4}},
		{"odd free slot goes to the least busy", 16, 15, map[string]int{"a": 15, "b": 0}, map[string]int{"a": 15, "b": 1}},
		{"remainder to the least busy, then by id", 10, 3, map[string]int{"a": 2, "b": 1, "c": 0}, map[string]int{"a": 4, "b": 3, "c": 3}},
		{"steps of a gone stream still take slots", 8, 6, map[string]int{"a": 2}, map[string]int{"a": 4}},
		{"full: a newcomer still gets 1, since 0 means all", 4, 4, map[string]int{"a": 4, "b": 0}, map[string]int{"a": 4, "b": 1}},
		{"over-full after a crossed dispatch", 2, 3, map[string]int{"a": 2, "b": 1}, map[string]int{"a": 2, "b": 1}},
		{"nobody connected", 4, 2, map[string]int{}, map[string]int{}},
	} {
		got := splitCapacity(tc.capacity, tc.busy, tc.inflight)
		require.Equal(t, tc.want, got, tc.name)
	}
}

// nextShare reads the capacity of the stream's next heartbeat.
func (s *execStream) nextShare(t *testing.T) int {
	t.Helper()
	return int(s.next(t, func(m *executorv1.ExecuteResponse) bool { return m.GetHeartbeat() != nil }).GetHeartbeat().GetCapacity())
}

// TestBusyCoordinatorGetsNearlyAllCapacity: of two coordinators on one
// executor, one idle, the busy one may run all but the idle one's single
// reserved slot, following the shares the executor announces; when the idle
// one's stream goes, the busy one is told it has everything.
func TestBusyCoordinatorGetsNearlyAllCapacity(t *testing.T) {
	t.Parallel()
	const capacity = 8
	g := newGate()
	s := startExecutor(t, Config{Capacity: capacity, HeartbeatInterval: longHeartbeat}, map[string]HandlerFunc{"block": g.handler})
	c := dialExecutor(t, s.addr)
	idle := c.openAs(t, "idle")
	require.Equal(t, capacity, idle.nextShare(t), "alone, a coordinator has the whole capacity")
	busy := c.openAs(t, "busy")

	// Act as a coordinator does: never more in flight than the last share,
	// and more as soon as a larger one is announced. Only the idle
	// coordinator's reserved slot is left: waiting for a share beyond that
	// would time out.
	sent, share := 0, busy.nextShare(t)
	require.Equal(t, capacity/2, share, "two idle coordinators split evenly")
	for {
		for ; sent < share; sent++ {
			busy.send(t, newStep("block", 1))
			g.awaitStart(t)
		}
		if sent >= capacity-1 {
			break
		}
		share = busy.nextShare(t)
	}
	require.Equal(t, capacity-1, sent)
	require.LessOrEqual(t, s.maxActive.Load(), int64(capacity))
	latest := 0
	for latest != 1 {
		latest = idle.nextShare(t)
		require.GreaterOrEqual(t, latest, 1, "an idle coordinator keeps one slot")
	}

	// The idle coordinator dies: the survivor may use the slot it held.
	idle.cancel()
	s.awaitSessionClosed(t, "idle")
	require.Equal(t, capacity, busy.nextShare(t))
	busy.send(t, newStep("block", 1))
	g.awaitStart(t)
	require.Equal(t, int64(capacity), s.maxActive.Load())

	close(g.release)
	for range capacity {
		require.NotNil(t, busy.result(t).GetSuccess())
	}
}

// holdHandler runs until the test sends on hold, one step per send, and
// reports each start on started.
type holdHandler struct {
	started chan string
	hold    chan struct{}
}

func newHoldHandler() *holdHandler {
	return &holdHandler{started: make(chan string, 16), hold: make(chan struct{})}
}

func (h *holdHandler) handle(ctx context.Context, req *Request) (any, error) {
	h.started <- req.StepID
	select {
	case <-h.hold:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *holdHandler) awaitStart(t *testing.T) string {
	t.Helper()
	select {
	case id := <-h.started:
		return id
	case <-time.After(waitFor):
		t.Fatal("handler did not start")
		return ""
	}
}

// TestDispatchOnLoweredShareWaitsForASlot: a coordinator that dispatches
// on a share the executor has just lowered must not make it run more than
// its capacity, nor fail the step: the step waits for a slot and runs.
func TestDispatchOnLoweredShareWaitsForASlot(t *testing.T) {
	t.Parallel()
	h := newHoldHandler()
	s := startExecutor(t, Config{Capacity: 2, HeartbeatInterval: longHeartbeat}, map[string]HandlerFunc{"hold": h.handle})
	c := dialExecutor(t, s.addr)
	a := c.openAs(t, "a")
	require.Equal(t, 2, a.nextShare(t))
	a1, a2 := newStep("hold", 1), newStep("hold", 1)
	a.send(t, a1)
	a.send(t, a2)
	h.awaitStart(t)
	h.awaitStart(t)

	// b connects while a fills the executor; its share is the minimum of
	// one, and it uses it at once.
	b := c.openAs(t, "b")
	require.Equal(t, 1, b.nextShare(t))
	b1 := newStep("hold", 1)
	b.send(t, b1)
	s.awaitQueued(t)
	require.Equal(t, int64(2), s.maxActive.Load(), "the third step waits instead of running")

	h.hold <- struct{}{}
	first := a.result(t)
	require.NotNil(t, first.GetSuccess())
	require.Equal(t, b1.GetStepId(), h.awaitStart(t), "the queued step takes the freed slot")
	close(h.hold)
	require.NotNil(t, a.result(t).GetSuccess())
	res := b.result(t)
	requireEcho(t, b1, s.exec, res)
	require.NotNil(t, res.GetSuccess(), "the step was not failed: %v", res.GetFailure())
	require.Equal(t, int64(2), s.maxActive.Load())
}

// TestQueuedStepsAnswerCancelAndShutdown: a step waiting for a slot is
// answered at once when cancelled or when the executor shuts down, without
// its handler ever starting; a stream that sends more than the whole
// capacity is still refused.
func TestQueuedStepsAnswerCancelAndShutdown(t *testing.T) {
	t.Parallel()
	h := newHoldHandler()
	s := startExecutor(t, Config{Capacity: 1, HeartbeatInterval: longHeartbeat}, map[string]HandlerFunc{"hold": h.handle})
	c := dialExecutor(t, s.addr)
	a := c.openAs(t, "a")
	running := newStep("hold", 1)
	a.send(t, running)
	h.awaitStart(t)

	b := c.openAs(t, "b")
	waiting := newStep("hold", 1)
	b.send(t, waiting)
	s.awaitQueued(t)
	over := newStep("hold", 1)
	b.send(t, over)
	res := b.result(t)
	requireEcho(t, over, s.exec, res)
	require.Equal(t, ClassOverCapacity, res.GetFailure().GetErrorClass(), "one stream never has more than the capacity in flight")

	b.cancelStep(t, waiting, "user asked")
	res = b.result(t)
	requireEcho(t, waiting, s.exec, res)
	require.Equal(t, ClassCancelled, res.GetFailure().GetErrorClass())
	require.Contains(t, res.GetFailure().GetMessage(), "cancelled by coordinator: user asked (before the step started)")

	late := newStep("hold", 2)
	b.send(t, late)
	s.awaitQueued(t)
	s.stop()
	res = b.result(t)
	requireEcho(t, late, s.exec, res)
	require.Equal(t, ClassShuttingDown, res.GetFailure().GetErrorClass())
	require.False(t, res.GetFailure().GetPermanent())

	close(h.hold)
	require.NotNil(t, a.result(t).GetSuccess())
	require.NoError(t, s.wait(t))
	require.Empty(t, h.started, "no queued step started its handler")
	require.Equal(t, int64(1), s.maxActive.Load())
}
