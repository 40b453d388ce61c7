//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDebounceAcrossCoordinatorsThroughCLI: two coordinator processes on
// one PostgreSQL schema, an executor registered with both. Debounced
// creates with one key sent to either fold into one task, which the other
// coordinator forwards to its owner; it runs once, with the last context,
// after the last create's delay; the next create makes a new task.
//
//	TASKER_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//		go test -count=1 -run TestDebounceAcrossCoordinatorsThroughCLI -v ./e2e/
func TestDebounceAcrossCoordinatorsThroughCLI(t *testing.T) {
	t.Parallel()
	base := os.Getenv(envTestPostgres)
	if base == "" {
		t.Skip("set " + envTestPostgres + " to run the PostgreSQL end-to-end test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	schema := fmt.Sprintf("tasker_debounce_%d", time.Now().UnixNano())
	multiCreateSchema(ctx, t, base, schema)
	dbURL, err := withSearchPath(base, schema)
	require.NoError(t, err)

	var cs [2]*cluster
	addrs := make([]string, len(cs))
	for i := range cs {
		addrs[i] = freeAddr(t)
		id := fmt.Sprintf("debounce-%d", i)
		start(t, id, "coordinator", "--listen", addrs[i], "--db", dbURL, "--id", id, "--log-level", "info")
		cs[i] = &cluster{t: t, coord: addrs[i]}
	}
	start(t, "debounce-exec", "executor", "--listen", freeAddr(t), "--coordinator", addrs[0],
		"--coordinators", addrs[1], "--id", "debounce-exec", "--capacity", "8", "--log-level", "info")
	for _, c := range cs {
		require.Eventually(t, func() bool {
			out, _, err := c.run("executors", "-o", "json")
			return err == nil && strings.Contains(out, `"connected":true`)
		}, 30*time.Second, 100*time.Millisecond, "the executor did not connect to %s", c.coord)
	}
	cs[0].tasker("template", "apply", filepath.Join(repoRoot(), "examples", "templates", "order_fulfillment.yaml"))

	create := func(c *cluster, rev int, delay string, extra ...string) string {
		return c.tasker(append([]string{"task", "create", "demo/order_fulfillment",
			"--context", fmt.Sprintf(`{"order_id":"D-1","rev":%d}`, rev), "--debounce-key", "D-1", "--debounce", delay}, extra...)...)
	}
	first := strings.Fields(create(cs[0], 1, "1h"))
	require.Equal(t, []string{"created", "task"}, first[:2])
	id := first[2]
	for rev := 2; rev <= 5; rev++ {
		out := strings.Fields(create(cs[rev%2], rev, "1h"))
		require.Equal(t, []string{"debounced", "task", id}, out[:3], "create %d via coordinator %d", rev, rev%2)
	}
	out := create(cs[1], 6, "300ms", "--wait", "-o", "json")
	var done struct {
		ID          string         `json:"id"`
		State       string         `json:"state"`
		Context     map[string]any `json:"context"`
		DebounceKey string         `json:"debounce_key"`
		Steps       []struct {
			Attempts int `json:"attempts"`
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &done), out)
	require.Equal(t, id, done.ID)
	require.Equal(t, "complete", done.State)
	require.Equal(t, "D-1", done.DebounceKey)
	require.EqualValues(t, 6, done.Context["rev"], "it ran with the last context")
	for _, s := range done.Steps {
		require.LessOrEqual(t, s.Attempts, 2, "one run (the demo's flaky step may retry once)")
	}

	next := strings.Fields(create(cs[0], 7, "1h"))
	require.Equal(t, "created", next[0], "it started: the next create is a new task")
	require.NotEqual(t, id, next[2])
}
