package coordinator_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

const propertyTemplate = `
namespace: test
name: prop
version: 1.0.0
concurrency:
  - key: context.customer
    max_running: 2
steps:
  - name: fetch
    handler: sleep
    config: {ms: 3}
    rate_limits:
      - name: prop
  - name: save
    handler: sleep
    config: {ms: 3}
    depends_on: [fetch]
    concurrency:
      - key: context.customer
        max_running: 1
    rate_limits:
      - name: prop
`

// Flow control's guarantees, read back from the stored transitions of a
// contended run: at most max_running tasks of a customer in progress and
// at most one save step of a customer running, in commit (sequence)
// order; dispatches within rate×window+burst over every window; every task
// complete, none starved. On SQLite, and on PostgreSQL with two
// coordinators sharing the keys and the bucket.
func TestFlowControlPropertiesFromTransitions(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		st := openSQLite(t)
		flowProperties(t, st, serveCoordinator(t, coordinator.Config{Store: st}, nil))
	})
	t.Run("PostgresTwoCoordinators", func(t *testing.T) {
		t.Parallel()
		schema := newPostgresSchema(t)
		a := serveCoordinator(t, coordinator.Config{Store: openPostgres(t, schema), ID: "prop-a"}, nil)
		b := serveCoordinator(t, coordinator.Config{Store: openPostgres(t, schema), ID: "prop-b"}, nil)
		flowProperties(t, openPostgres(t, schema), a, b)
	})
}

func flowProperties(t *testing.T, st store.Store, hs ...*harness) {
	const (
		tasks, customers = 60, 3
		units, burst     = 200, 4
	)
	period := time.Second
	_, err := st.RateLimitSet(context.Background(), &store.RateLimitSetParams{Name: "prop", Units: units, Period: period, Burst: burst, At: time.Now()})
	require.NoError(t, err)
	for _, h := range hs {
		h.startExecutor(16, nil)
	}
	hs[0].apply(propertyTemplate)
	rng := rand.New(rand.NewPCG(7, 11))
	ids := make([]string, tasks)
	for i := range ids {
		h := hs[i%len(hs)]
		ids[i] = h.create("test", "prop", map[string]any{"customer": fmt.Sprintf("c%d", rng.IntN(customers)), "n": i},
			withPriority(int32(1+rng.IntN(4)))).GetId()
	}

	type event struct {
		seq      int64
		customer string
		step     string // "" for the task
		delta    int
	}
	var events []event
	var dispatched []time.Time
	for i, id := range ids {
		task := hs[i%len(hs)].waitState(id, coordinatorv1.State_STATE_COMPLETE)
		customer := task.GetContext().GetFields()["customer"].GetStringValue()
		require.NotEmpty(t, customer)
		add := func(step string, trs []*coordinatorv1.Transition) {
			for _, tr := range trs {
				switch {
				case tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS && tr.GetFromState() != coordinatorv1.State_STATE_IN_PROGRESS:
					events = append(events, event{tr.GetSeq(), customer, step, +1})
					if step != "" {
						dispatched = append(dispatched, tr.GetAt().AsTime())
					}
				case tr.GetFromState() == coordinatorv1.State_STATE_IN_PROGRESS && tr.GetToState() != coordinatorv1.State_STATE_IN_PROGRESS:
					events = append(events, event{tr.GetSeq(), customer, step, -1})
				}
			}
		}
		add("", task.GetTransitions())
		for _, s := range task.GetSteps() {
			add(s.GetName(), s.GetTransitions())
		}
	}
	slices.SortFunc(events, func(a, b event) int { return int(a.seq - b.seq) })
	running := map[string]int{}
	peakTasks := 0
	for _, ev := range events {
		k := ev.customer + "/" + ev.step
		running[k] += ev.delta
		switch ev.step {
		case "":
			require.LessOrEqual(t, running[k], 2, "tasks of %s in progress at seq %d", ev.customer, ev.seq)
			peakTasks = max(peakTasks, running[k])
		case "save":
			require.LessOrEqual(t, running[k], 1, "save steps of %s running at seq %d", ev.customer, ev.seq)
		}
	}
	require.Equal(t, 2, peakTasks, "a customer's tasks never overlapped: the run did not contend")
	require.Len(t, dispatched, 2*tasks)
	requireWithinRate(t, dispatched, units, period, burst)
}
