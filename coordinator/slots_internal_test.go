package coordinator

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// slotEvents records the slots the pool hands to waiting steps.
type slotEvents struct{ granted chan string }

func (slotEvents) results(string, []*executorv1.StepResult)  {}
func (slotEvents) lost(string, string, int32, string)        {}
func (slotEvents) unreported(string, string, int32, string)  {}
func (s slotEvents) slot(w waiter, executorID string)        { s.granted <- w.stepID + "@" + executorID }
func (slotEvents) running(string, []*executorv1.RunningStep) {}

// A step that found no free slot is queued after its change commits; a
// slot that freed in between (here: an executor that connected) has no
// release left to hand it over, so queueing hands it out at once.
func TestWaitTakesASlotThatFreedBeforeItQueued(t *testing.T) {
	ev := slotEvents{granted: make(chan string, 1)}
	var bg routines
	defer bg.close()
	p := newPool(slog.New(slog.NewTextHandler(io.Discard, nil)), "c", nil, time.Second, time.Second, ev, &bg)
	require.Empty(t, p.acquire("charge", ""), "no executor yet")

	p.mu.Lock()
	p.conns["exec-1"] = &execConn{id: "exec-1", handlers: []string{"charge"}, capacity: 2, connected: true, inflight: map[attemptKey]string{}}
	p.mu.Unlock()

	p.wait("task-1", "step-1", "charge", 2)
	select {
	case got := <-ev.granted:
		require.Equal(t, "step-1@exec-1", got)
	case <-time.After(10 * time.Second):
		t.Fatal("the free slot was not handed to the waiting step")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Equal(t, 1, p.conns["exec-1"].used)
	require.Nil(t, p.waiters["charge"], "nothing left waiting")
}
