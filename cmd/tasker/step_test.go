package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/executor"
	"github.com/tasker-go/tasker/executor/builtin"
)

// tasker step rerun against a real coordinator and executor: the step and
// its descendants run again, the others keep their results, the reason is
// recorded; an unknown step is refused naming it.
func TestStepRerun(t *testing.T) {
	t.Parallel()
	rc := startWithExecutor(t, 4)

	tmpl := writeFile(t, "t.yaml", `namespace: demo
name: rerun
version: 1.0.0
steps:
  - {name: fetch, handler: noop}
  - {name: charge, handler: noop, depends_on: [fetch]}
  - {name: ship, handler: noop, depends_on: [charge]}
`)
	res := runCLI(t, rc.addr, "template", "apply", tmpl)
	require.Equal(t, 0, res.code, res.stderr)
	res = runCLI(t, rc.addr, "task", "create", "demo/rerun", "--wait", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var task taskJSON
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &task), res.stdout)
	require.Equal(t, "complete", task.State)

	res = runCLI(t, rc.addr, "step", "rerun", task.ID, "charge", "--reason", "wrong amount", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var got taskJSON
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got), res.stdout)
	require.Equal(t, task.ID, got.ID)
	require.NotEqual(t, "complete", got.State, "the task runs again")

	var done taskJSON
	waitComplete := func() {
		require.Eventually(t, func() bool {
			res := runCLI(t, rc.addr, "task", "get", task.ID, "-o", "json")
			require.Equal(t, 0, res.code, res.stderr)
			require.NoError(t, json.Unmarshal([]byte(res.stdout), &done), res.stdout)
			return done.State == "complete"
		}, 20*time.Second, 10*time.Millisecond)
	}
	waitComplete()
	reruns := map[string]int{}
	for _, s := range done.Steps {
		require.Equal(t, "complete", s.State, s.Name)
		for _, tr := range s.Transitions {
			if strings.HasPrefix(tr.Reason, "rerun from charge") {
				require.Equal(t, "rerun from charge by operator: wrong amount", tr.Reason)
				reruns[s.Name]++
			}
		}
	}
	require.Equal(t, map[string]int{"charge": 1, "ship": 1}, reruns)

	res = runCLI(t, rc.addr, "step", "rerun", task.ID, "chrage")
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: task "+task.ID+` has no step "chrage" (NotFound)`+"\n", res.stderr)

	res = runCLI(t, rc.addr, "step", "rerun", task.ID)
	require.Equal(t, 2, res.code, "a usage error")
	require.Contains(t, res.stderr, "accepts 2 arg(s)")

	// The same over REST.
	post := func(stepName string) (int, string) {
		resp, err := http.Post("http://"+rc.httpAddr+"/api/v1/tasks/"+task.ID+"/steps/"+stepName+":rerun",
			"application/json", strings.NewReader(`{"reason": "via REST"}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := post("ship")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, task.ID)
	waitComplete()
	var viaREST int
	for _, tr := range done.Steps[2].Transitions {
		if tr.Reason == "rerun from ship by operator: via REST" {
			viaREST++
		}
	}
	require.Equal(t, 1, viaREST)
	code, body = post("nope")
	require.Equal(t, http.StatusNotFound, code, body)
	require.Contains(t, body, `no step \"nope\"`)
}

// startWithExecutor starts a coordinator on a new SQLite file (gRPC and
// HTTP on loopback) and an executor of the built-in handlers with capacity
// slots, both stopped when the test ends.
func startWithExecutor(t *testing.T, capacity int) *runningCoordinator {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rc, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0", httpListen: "127.0.0.1:0",
		store: storeFlags{db: filepath.Join(t.TempDir(), "tasker.db"), sync: "normal"},
		log:   log,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.stop()) })
	ex, err := executor.New(executor.Config{Coordinator: rc.addr, Capacity: capacity, Logger: log, RegisterInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, builtin.Register(ex))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = ex.Serve(ctx, lis)
	}()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return rc
}
