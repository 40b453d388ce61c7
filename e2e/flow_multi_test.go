//go:build unix

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// The flow-control run: tasks of a few customers, at most flowMaxRunning
// running per customer, every step drawing on one rate limit, across three
// coordinators on one PostgreSQL schema, one of them killed with SIGKILL
// while it holds keys and tokens.
const (
	flowTasks      = 120
	flowCustomers  = 4
	flowMaxRunning = 2
	flowRate       = 40 // per second
	flowBurst      = 5
	flowKillAfter  = flowTasks / 3
)

const flowTemplate = `
namespace: flow
name: sync_customer
version: 1.0.0
concurrency:
  - key: context.customer
    max_running: 2
steps:
  - name: fetch
    handler: sleep
    config: {ms: 30}
    rate_limits:
      - name: api
  - name: store
    handler: sleep
    config: {ms: 30}
    depends_on: [fetch]
    rate_limits:
      - name: api
`

// TestFlowControlMultiCoordinatorPostgres checks the flow-control
// guarantees from the stored transitions alone: never more than max_running
// tasks of one customer in progress (in commit order), never more step
// dispatches in any window than rate×window+burst, every task complete
// exactly once, through a kill -9 of a coordinator holding keys.
func TestFlowControlMultiCoordinatorPostgres(t *testing.T) {
	baseURL := os.Getenv(envTestPostgres)
	if baseURL == "" {
		t.Skipf("%s is not set: give it a PostgreSQL URL to run three coordinators with flow control on one database", envTestPostgres)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	schema := fmt.Sprintf("tasker_flow_%d", time.Now().UnixNano())
	pool := multiCreateSchema(ctx, t, baseURL, schema)
	dbURL, err := withSearchPath(baseURL, schema)
	require.NoError(t, err)

	coords := make([]*multiCoordinator, 3)
	for i := range coords {
		c := &multiCoordinator{id: fmt.Sprintf("flow-c%d", i+1), addr: freeAddr(t)}
		c.proc = start(t, c.id, "coordinator", "--listen", c.addr, "--db", dbURL, "--id", c.id,
			"--lease-ttl", multiLeaseTTL.String(), "--executor-grace", multiExecutorGrace.String(), "--log-level", "info")
		conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		c.client = coordinatorv1.NewCoordinatorServiceClient(conn)
		coords[i] = c
	}
	for _, c := range coords {
		require.Eventually(t, func() bool {
			_, err := c.client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
			return err == nil
		}, 60*time.Second, 100*time.Millisecond, "coordinator %s did not start", c.id)
	}
	addrs := []string{coords[0].addr, coords[1].addr, coords[2].addr}
	start(t, "flow-exec", "executor", "--listen", freeAddr(t), "--coordinator", addrs[0],
		"--coordinators", strings.Join(addrs[1:], ","), "--id", "flow-exec", "--capacity", "32", "--log-level", "info")
	for _, c := range coords {
		require.Eventually(t, func() bool {
			resp, err := c.client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
			return err == nil && len(resp.GetExecutors()) == 1 && resp.GetExecutors()[0].GetConnected()
		}, 60*time.Second, 100*time.Millisecond, "the executor did not connect to %s", c.id)
	}

	cl := &cluster{t: t, coord: coords[0].addr}
	cl.tasker("limit", "set", "api", "--rate", fmt.Sprintf("%d/s", flowRate), "--burst", fmt.Sprint(flowBurst))
	file := filepath.Join(t.TempDir(), "flow.yaml")
	require.NoError(t, os.WriteFile(file, []byte(flowTemplate), 0o600))
	cl.tasker("template", "apply", file)

	// Submit round-robin; kill the third coordinator once it has taken a
	// share, while its tasks hold keys. Creates it would have answered go
	// to the next coordinator with the same idempotency key.
	var killOnce sync.Once
	live := coords
	for n := range flowTasks {
		if n == flowKillAfter {
			killOnce.Do(func() {
				coords[2].proc.kill()
				live = coords[:2]
			})
		}
		taskCtx, err := structpb.NewStruct(map[string]any{"customer": fmt.Sprintf("c%d", n%flowCustomers), "n": n})
		require.NoError(t, err)
		req := &coordinatorv1.CreateTaskRequest{Namespace: "flow", Name: "sync_customer", Context: taskCtx,
			IdempotencyKey: fmt.Sprintf("%s-%d", schema, n), Priority: int32(1 + n%4)}
		require.Eventually(t, func() bool {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := live[n%len(live)].client.CreateTask(actx, req)
			return err == nil
		}, 30*time.Second, 50*time.Millisecond, "create task %d", n)
	}

	require.Eventually(t, func() bool {
		var unfinished int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE state IN ('pending', 'in_progress')`).Scan(&unfinished)
		return err == nil && unfinished == 0
	}, 3*time.Minute, 200*time.Millisecond, "tasks did not all finish")

	// Every task completed, once.
	var total, complete, completions int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'complete') FROM tasks`).Scan(&total, &complete))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM transitions WHERE step_id IS NULL AND to_state = 'complete'`).Scan(&completions))
	require.Equal(t, flowTasks, total)
	require.Equal(t, flowTasks, complete)
	require.Equal(t, flowTasks, completions)

	// Never more than max_running tasks of a customer in progress, in the
	// order the transitions committed.
	rows, err := pool.Query(ctx, `SELECT t.context::jsonb->>'customer', tr.from_state, tr.to_state
		FROM transitions tr JOIN tasks t ON t.id = tr.task_id
		WHERE tr.step_id IS NULL ORDER BY tr.seq`)
	require.NoError(t, err)
	running, peak := map[string]int{}, map[string]int{}
	for rows.Next() {
		var customer, from, to string
		require.NoError(t, rows.Scan(&customer, &from, &to))
		switch {
		case to == "in_progress" && from != "in_progress":
			running[customer]++
			peak[customer] = max(peak[customer], running[customer])
		case from == "in_progress" && to != "in_progress":
			running[customer]--
		}
		require.LessOrEqual(t, running[customer], flowMaxRunning, "customer %s", customer)
	}
	require.NoError(t, rows.Err())
	for c := range flowCustomers {
		require.Equal(t, flowMaxRunning, peak[fmt.Sprintf("c%d", c)], "customer c%d never had its tasks overlap: the test did not contend", c)
	}

	// Step dispatches keep to the rate over every window.
	rows, err = pool.Query(ctx, `SELECT at FROM transitions WHERE step_id IS NOT NULL AND to_state = 'in_progress' ORDER BY at`)
	require.NoError(t, err)
	ats, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	// Attempts in flight on the killed coordinator are dispatched again
	// by the one that takes its tasks over, drawing tokens again.
	require.GreaterOrEqual(t, len(ats), 2*flowTasks, "each step dispatched")
	slices.Sort(ats)
	for i := range ats {
		for j := i; j < len(ats); j++ {
			w := time.Duration(ats[j] - ats[i])
			allowed := flowRate*w.Seconds() + flowBurst
			require.LessOrEqual(t, float64(j-i+1), allowed+1e-9, "%d dispatches within %s", j-i+1, w)
		}
	}
	gaps := make([]time.Duration, 0, len(ats))
	for i := 1; i < len(ats); i++ {
		gaps = append(gaps, time.Duration(ats[i]-ats[i-1]))
	}
	slices.Sort(gaps)
	t.Logf("longest gaps between dispatches: %v", gaps[max(len(gaps)-5, 0):])
	span := time.Duration(ats[len(ats)-1] - ats[0])
	t.Logf("%d dispatches over %s (%.1f/s against a limit of %d/s, burst %d); peak per customer %v",
		len(ats), span.Round(time.Millisecond), float64(len(ats))/span.Seconds(), flowRate, flowBurst, peak)
}
