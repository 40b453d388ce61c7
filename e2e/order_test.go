package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/sqlite"
	"github.com/tasker-go/tasker/template"
)

// orderItems is how many line items the order workflow charges.
const orderItems = 500

// The order workflow of issue 12, on the built-in handlers: it branches on
// the order's region (decide on context.region), charges every line item
// (a for_each of 500 instances over the list split returns, each failing
// its first attempt), ships through a child task, and waits for a manager's
// approval, a signal the test sends with the CLI.
const orderShipmentTemplate = `
namespace: shop
name: shipment
version: 1.0.0
steps:
  - name: label
    handler: echo
  - name: pickup
    handler: sleep
    config: {ms: 20}
    depends_on: [label]
`

func orderTemplate() string {
	items := make([]string, orderItems)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	return `
namespace: shop
name: order
version: 1.0.0
steps:
  - name: route
    handler: decide
    decision: true
    config: {field: region, cases: {intl: [customs], home: [pack]}}
  - name: customs
    handler: sleep
    config: {ms: 10}
    depends_on: [route]
  - name: pack
    handler: noop
    depends_on: [route]
  - name: split
    handler: echo
    config: {items: [` + strings.Join(items, ", ") + `]}
    depends_on: [customs, pack]
  - name: charge
    handler: flaky
    config: {fail_times: 1}
    depends_on: [split]
    for_each: results.split.config.items
    retry_limit: 4
    backoff: {initial: 10ms, max: 100ms}
  - name: ship
    task: shop/shipment@1.0.0
    context: {order: context.order_id}
    depends_on: [charge]
    retry_limit: 4
    backoff: {initial: 10ms, max: 100ms}
  - name: approval
    wait_for: {signal: approved}
    depends_on: [ship]
  - name: done
    handler: noop
    depends_on: [approval]
`
}

// The order workflow survives kill -9 of its coordinator at random points
// (three seeds, each its own cluster): the stored history shows every
// instance completed once, the child task created once, and the signal
// consumed once, by the approval step, whose result is its payload.
func TestOrderWorkflowSurvivesKills(t *testing.T) {
	t.Parallel()
	seeds := []uint64{1, 2, 3}
	if v := os.Getenv("TASKER_ORDER_SEED"); v != "" {
		var s uint64
		_, err := fmt.Sscan(v, &s)
		require.NoError(t, err)
		seeds = []uint64{s}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runOrder(t, seed)
		})
	}
}

func runOrder(t *testing.T, seed uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(seed, 0x0a11))
	dir := t.TempDir()
	db := filepath.Join(dir, "tasker.db")
	addr := freeAddr(t)
	args := []string{"coordinator", "--listen", addr, "--db", db, "--id", "order-c", "--executor-grace", "2s", "--log-level", "debug"}
	coord := start(t, "coordinator", args...)
	c := &cluster{t: t, coord: addr}
	for i := 1; i <= 2; i++ {
		start(t, fmt.Sprintf("executor-%d", i), "executor", "--listen", freeAddr(t), "--coordinator", addr,
			"--id", fmt.Sprintf("order-exec-%d", i), "--capacity", "16", "--log-level", "info")
	}
	require.Eventually(t, func() bool {
		out, _, err := c.run("executors", "-o", "json")
		return err == nil && strings.Count(out, `"connected":true`) == 2
	}, 60*time.Second, 100*time.Millisecond, "executors did not connect")
	for name, body := range map[string]string{"shipment.yaml": orderShipmentTemplate, "order.yaml": orderTemplate()} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		if name == "order.yaml" {
			continue // the child first: the parent names it
		}
		c.tasker("template", "apply", path)
	}
	c.tasker("template", "apply", filepath.Join(dir, "order.yaml"))

	out := c.tasker("task", "create", "shop/order", "--context", `{"order_id":"o-42","region":"intl"}`,
		"--idempotency-key", fmt.Sprintf("order-%d", seed), "-o", "json")
	var created struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)
	id := created.ID

	// Two kills at points the seed picks over the workflow's run, and the
	// signal sent at a third, by the CLI, retried while the coordinator
	// is down. A kill may land before the signal or after it.
	began := time.Now()
	kills := []time.Duration{time.Duration(200+rng.IntN(2500)) * time.Millisecond, time.Duration(200+rng.IntN(5000)) * time.Millisecond}
	slices.Sort(kills)
	signalAt := time.Duration(rng.IntN(4000)) * time.Millisecond
	t.Logf("seed %d: kills at %v, signal at %s", seed, kills, signalAt)
	signalled := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
			signalled <- ctx.Err()
			return
		case <-time.After(time.Until(began.Add(signalAt))):
		}
		for {
			_, errOut, err := c.run("task", "signal", id, "approved", "--payload", `{"by":"ops-lead"}`)
			if err == nil || strings.Contains(errOut, "FailedPrecondition") || strings.Contains(errOut, "failed precondition") {
				signalled <- nil // a retry after an answer lost in a kill finds the first one kept
				return
			}
			select {
			case <-ctx.Done():
				signalled <- fmt.Errorf("signal: %w (last: %v %s)", ctx.Err(), err, errOut)
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	for k, at := range kills {
		require.Eventually(t, func() bool { return time.Since(began) >= at }, time.Minute, 5*time.Millisecond)
		coord.kill()
		t.Logf("killed the coordinator at %s", time.Since(began).Round(time.Millisecond))
		coord = start(t, fmt.Sprintf("coordinator-restart-%d", k+1), args...)
	}
	require.NoError(t, <-signalled)

	var final taskJSON
	require.Eventually(t, func() bool {
		out, _, err := c.run("task", "get", id, "-o", "json")
		if err != nil {
			return false
		}
		final = decodeTask(t, out)
		return final.State == "complete" || final.State == "error"
	}, 3*time.Minute, 100*time.Millisecond, "the order did not finish")
	if final.State != "complete" {
		for _, s := range final.Steps {
			if s.InstanceOf == "" || s.Error != nil {
				t.Logf("step %s %s after %d attempts: results %s, error %+v", s.Name, s.State, s.Attempts, s.Results, s.Error)
			}
		}
	}
	require.Equal(t, "complete", final.State)
	t.Logf("seed %d: complete after %s", seed, time.Since(began).Round(time.Millisecond))
	coord.stop(10 * time.Second)
	auditOrder(ctx, t, db, id)
}

// auditOrder reads the store the coordinator left and checks the order's
// history and its child's.
func auditOrder(ctx context.Context, t *testing.T, db, id string) {
	st, err := sqlite.Open(ctx, sqlite.Config{Path: db})
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()

	tasks, err := st.TaskList(ctx, &store.TaskListParams{Limit: 100})
	require.NoError(t, err)
	for _, tk := range tasks {
		t.Logf("stored task %s %s/%s %s parent %q", tk.ID, tk.Namespace, tk.Name, tk.State, tk.ParentTaskID)
	}
	require.Len(t, tasks, 2, "the order and one child, created once")
	var child *store.Task
	for _, tk := range tasks {
		if tk.ID != id {
			child = tk
		}
	}
	require.NotNil(t, child)
	require.Equal(t, "shop/shipment", child.Namespace+"/"+child.Name)
	require.Equal(t, id, child.ParentTaskID)
	require.Equal(t, state.Complete, child.State)

	// Every transition legal and in order, every step complete (or
	// skipped) exactly once, no attempt before its parents: the replay
	// the chaos suite runs.
	a := &historyAudit{rules: historyRules{onPurpose: "fails on purpose"}}
	decisions := map[string]map[string]bool{}
	require.NoError(t, eachHistory(ctx, st, tasks, func(tk *store.Task, steps []*store.Step, trs []*store.Transition) {
		ref := tk.Namespace + "/" + tk.Name
		if _, ok := decisions[ref]; !ok {
			ds, err := decisionSteps(ctx, st, tk)
			require.NoError(t, err)
			decisions[ref] = ds
		}
		a.checkTask(tk, steps, trs, decisions[ref])
	}))
	require.Zero(t, a.violationCount, "violations:\n%s", strings.Join(a.violations, "\n"))
	require.Zero(t, a.doubleCompletions)

	steps, err := st.StepList(ctx, id)
	require.NoError(t, err)
	byName := map[string]*store.Step{}
	instances := 0
	for _, s := range steps {
		byName[s.Name] = s
		if of, _, ok := template.ParseInstanceName(s.Name); ok {
			require.Equal(t, "charge", of)
			require.Equal(t, state.Complete, s.State, s.Name)
			require.GreaterOrEqual(t, s.Attempts, 2, "%s: its first attempt fails on purpose", s.Name)
			instances++
		}
	}
	require.Equal(t, orderItems, instances, "one instance per line item")
	require.Equal(t, state.Skipped, byName["pack"].State, "the home branch was not taken")
	require.Equal(t, state.Complete, byName["customs"].State)
	var charged []json.RawMessage
	require.NoError(t, json.Unmarshal(byName["charge"].Results, &charged))
	require.Len(t, charged, orderItems)

	signals, err := st.SignalList(ctx, &store.SignalListParams{TaskID: id})
	require.NoError(t, err)
	require.Len(t, signals, 1, "the signal is stored once")
	require.Equal(t, byName["approval"].ID, signals[0].ConsumedStepID, "consumed by the approval step")
	require.JSONEq(t, `{"by":"ops-lead"}`, string(byName["approval"].Results))
	t.Logf("audit: %d steps checked, %d instances, %d dispatches (%d retries), child %s", a.steps, instances, a.dispatches, a.redispatches, child.ID)
}
