package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
)

// How the load generator learns that a task ended (Config.Completions).
const (
	// CompletionsEvents follows every coordinator's event log
	// (SubscribeEvents, task transitions of the run's template only): one
	// stream per coordinator for the whole run. A task's latency ends at its
	// terminal transition's recorded time, so it does not depend on how the
	// log is batched on its way to bench; it leaves out the durable commit
	// of that last transition and its delivery to a client.
	CompletionsEvents = "events"
	// CompletionsWatch opens a WatchTask stream per task, as bench did
	// before: a task's latency ends when its terminal transition reaches
	// bench, so it includes the last commit and the delivery, and each task
	// costs both sides a stream.
	CompletionsWatch = "watch"
)

// completion is how a task ended: its terminal state and the coordinator's
// recorded time of the transition into it.
type completion struct {
	state coordinatorv1.State
	at    time.Time
}

// completions follows the event logs of the coordinators of a run and
// hands each task's end to the worker waiting for it. A task may end
// before the worker that created it knows its id (the event can overtake
// the CreateTask answer), so ends nobody waits for yet are kept until
// asked for.
type completions struct {
	// mu guards waiting, early, ended and err.
	mu      sync.Mutex
	waiting map[string]chan completion
	early   map[string]completion
	// ended holds every task already handed over, so the same end read
	// from a second coordinator's log is dropped.
	ended map[string]struct{}
	err   error
	// failed is closed once err is set.
	failed chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// followCompletions subscribes to the task events of the run's template on
// every coordinator, from now on, and returns once every subscription is in
// place: a task created after it returns cannot end unseen.
func followCompletions(ctx context.Context, targets []*target, namespace, name string) (*completions, error) {
	ctx, cancel := context.WithCancel(ctx)
	c := &completions{
		waiting: map[string]chan completion{}, early: map[string]completion{}, ended: map[string]struct{}{},
		failed: make(chan struct{}), cancel: cancel,
	}
	for _, t := range targets {
		stream, err := t.clients[0].SubscribeEvents(ctx, &coordinatorv1.SubscribeEventsRequest{
			Namespace: namespace, Name: name, Kinds: []coordinatorv1.EventKind{coordinatorv1.EventKind_EVENT_KIND_TASK},
			FromNow: true, Follow: true,
		})
		if err == nil {
			// The header says the stream's starting point is fixed.
			_, err = stream.Header()
		}
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("subscribe to the events of %s: %w", t.Addr, err)
		}
		c.wg.Go(func() {
			for {
				msg, err := stream.Recv()
				if err != nil {
					if ctx.Err() == nil {
						c.fail(fmt.Errorf("events of %s: %w", t.Addr, err))
					}
					return
				}
				tr := msg.GetEvent().GetTransition()
				if tr.GetStepName() == "" && statepb.Terminal(tr.GetToState()) {
					c.deliver(tr.GetTaskId(), completion{state: tr.GetToState(), at: tr.GetAt().AsTime()})
				}
			}
		})
	}
	return c, nil
}

func (c *completions) deliver(id string, end completion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.ended[id]; ok {
		return
	}
	if ch, ok := c.waiting[id]; ok {
		delete(c.waiting, id)
		c.ended[id] = struct{}{}
		ch <- end
		return
	}
	c.early[id] = end
}

func (c *completions) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.failed)
	}
}

// await returns how task id ended, waiting for it if need be.
func (c *completions) await(ctx context.Context, id string) (completion, error) {
	c.mu.Lock()
	if end, ok := c.early[id]; ok {
		delete(c.early, id)
		c.ended[id] = struct{}{}
		c.mu.Unlock()
		return end, nil
	}
	if c.err != nil {
		c.mu.Unlock()
		return completion{}, c.err
	}
	ch := make(chan completion, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	select {
	case end := <-ch:
		return end, nil
	case <-c.failed:
		return completion{}, fmt.Errorf("task %s: %w", id, c.err)
	case <-ctx.Done():
		return completion{}, fmt.Errorf("task %s: %w", id, ctx.Err())
	}
}

// stop ends the subscriptions and waits for their readers.
func (c *completions) stop() {
	c.cancel()
	c.wg.Wait()
}
