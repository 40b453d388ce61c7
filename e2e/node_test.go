package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// nodeInstallTimeout bounds `npm ci` for the Node executor: a cold install
// from the registry takes seconds, a hung registry must not hang the suite.
const nodeInstallTimeout = 5 * time.Minute

// nodeExecutorDir is the Node example executor, relative to the repo root.
var nodeExecutorDir = filepath.Join("examples", "executor-node")

// interopTemplate alternates Go built-ins and Node handlers, so every result
// crosses the language boundary at least once in each direction. total sums
// the numbers of wobble ({"attempt":2}) and nap ({"slept_ms":5}).
const interopTemplate = `
namespace: interop
name: go_node_relay
version: 1.0.0
description: Results cross between a Go and a Node executor in both directions.
steps:
  - name: greet
    handler: echo
  - name: shout
    handler: node_upper
    depends_on: [greet]
  - name: relay
    handler: echo
    depends_on: [shout]
  - name: wobble
    handler: node_flaky
    depends_on: [relay]
    config: {fail_times: 1}
    backoff: {initial: 10ms, multiplier: 2, max: 100ms}
  - name: nap
    handler: sleep
    depends_on: [greet]
    config: {ms: 5}
  - name: total
    handler: node_sum
    depends_on: [wobble, nap]
  - name: finish
    handler: noop
    depends_on: [total]
`

// nodeInstall serializes requireNode's install: on a fresh clone two
// parallel tests each ran npm ci in the same directory, and one failed
// removing what the other was writing (ENOTEMPTY, in CI).
var nodeInstall sync.Mutex

// requireNode skips the test unless node and npm are installed, and installs
// the Node executor's locked dependencies when they are missing.
func requireNode(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping Go/Node interop test: %s is not installed (need Node.js 20+ and npm on PATH)", tool)
		}
	}
	dir := filepath.Join(repoRoot(), nodeExecutorDir)
	nodeInstall.Lock()
	defer nodeInstall.Unlock()
	// npm writes node_modules/.package-lock.json last, so its presence means
	// an install finished rather than merely started.
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeInstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "npm ci in %s (within %s):\n%s", dir, nodeInstallTimeout, out)
	return dir
}

// startNode runs the Node executor like start runs tasker: in the
// background, logging to a file, stopped with SIGINT when the test ends and
// its log printed if the test failed.
func startNode(t *testing.T, dir, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command("node", append([]string{"src/main.js"}, args...)...)
	cmd.Dir = dir
	return startCmd(t, name, cmd, nil)
}

type executorLine struct {
	ID        string   `json:"id"`
	Language  string   `json:"language"`
	Handlers  []string `json:"handlers"`
	Connected bool     `json:"connected"`
}

// connectedExecutors lists the executors the coordinator has a stream to.
// runInterop registers the template yaml (named ref), runs one task of it
// with the context {"text":"hello"} to its end, requires the task and
// every step complete, and returns the task with its steps' indices by name.
func runInterop(t *testing.T, c *cluster, yaml, ref string) (taskJSON, map[string]int) {
	t.Helper()
	tmpl := filepath.Join(t.TempDir(), "interop.yaml")
	require.NoError(t, os.WriteFile(tmpl, []byte(yaml), 0o600))
	require.Contains(t, c.tasker("template", "apply", tmpl), "registered "+ref)
	task := decodeTask(t, c.tasker("task", "create", ref, "--context", `{"text":"hello"}`, "--wait", "-o", "json"))
	require.Equal(t, "complete", task.State)
	steps := map[string]int{}
	for i, s := range task.Steps {
		steps[s.Name] = i
		require.Equal(t, "complete", s.State, s.Name)
	}
	return task, steps
}

func connectedExecutors(c *cluster) map[string]executorLine {
	out, _, err := c.run("executors", "-o", "json")
	if err != nil {
		return nil
	}
	got := map[string]executorLine{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e executorLine
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Connected {
			got[e.ID] = e
		}
	}
	return got
}

func TestNodeExecutorInterop(t *testing.T) {
	t.Parallel()
	dir := requireNode(t)

	coord := freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coord, "--db", filepath.Join(t.TempDir(), "tasker.db"), "--log-level", "debug")
	c := &cluster{t: t, coord: coord}
	start(t, "executor-go", "executor", "--listen", freeAddr(t), "--coordinator", coord, "--id", "go-1", "--capacity", "4", "--log-level", "debug")
	node := startNode(t, dir, "executor-node", "--listen", freeAddr(t), "--coordinator", coord, "--id", "node-1", "--capacity", "4", "--log-level", "debug")

	var executors map[string]executorLine
	require.Eventually(t, func() bool {
		executors = connectedExecutors(c)
		return len(executors) == 2
	}, 30*time.Second, 100*time.Millisecond, "the Go and Node executors did not both connect")
	require.Equal(t, "node", executors["node-1"].Language)
	require.Equal(t, []string{"node_flaky", "node_sleep", "node_sum", "node_upper"}, executors["node-1"].Handlers)
	require.Equal(t, "go", executors["go-1"].Language)

	task, steps := runInterop(t, c, interopTemplate, "interop/go_node_relay")
	require.Len(t, steps, 7)
	results := func(name string) map[string]json.RawMessage {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(task.Steps[steps[name]].Results, &m), "%s results: %s", name, task.Steps[steps[name]].Results)
		return m
	}

	// Go → Node: node_upper saw the task context and the Go echo's results
	// exactly as the Go step stored them.
	greet := task.Steps[steps["greet"]].Results
	require.JSONEq(t, `{"text":"hello"}`, string(results("greet")["context"]))
	shout := results("shout")
	require.JSONEq(t, `"HELLO"`, string(shout["upper"]))
	require.JSONEq(t, `{"greet":`+string(greet)+`}`, string(shout["parents"]))

	// Node → Go: the Go echo after node_upper received its results intact.
	var relayParents map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(results("relay")["parents"], &relayParents))
	require.JSONEq(t, string(task.Steps[steps["shout"]].Results), string(relayParents["shout"]))
	require.Contains(t, string(relayParents["shout"]), `"upper":"HELLO"`)

	// node_flaky failed its first attempt retryably and the coordinator
	// retried it.
	wobble := task.Steps[steps["wobble"]]
	require.Equal(t, 2, wobble.Attempts)
	require.JSONEq(t, `{"attempt":2}`, string(wobble.Results))
	var failed []string
	for _, tr := range wobble.Transitions {
		if tr.To == "error" {
			failed = append(failed, tr.Reason)
		}
	}
	require.Len(t, failed, 1, "one failed attempt before the success")
	require.Contains(t, failed[0], "node_flaky: attempt 1 fails on purpose")

	// node_sum added numbers from a Node parent and a Go parent.
	require.JSONEq(t, `{"sum":7}`, string(task.Steps[steps["total"]].Results))

	// Each step ran on the executor of its language.
	for _, s := range task.Steps {
		want := "go-1"
		if strings.HasPrefix(s.Handler, "node_") {
			want = "node-1"
		}
		for _, tr := range s.Transitions {
			if tr.To == "in_progress" {
				require.True(t, strings.HasSuffix(tr.Reason, " "+want), "%s: %q", s.Name, tr.Reason)
			}
		}
	}

	// The Node executor shuts down gracefully on SIGINT.
	node.stop(15 * time.Second)
	require.True(t, node.cmd.ProcessState.Success(), "node executor exit: %s", node.cmd.ProcessState)
	logText, err := os.ReadFile(node.log)
	require.NoError(t, err)
	require.True(t, bytes.Contains(logText, []byte(`msg="executor stopped"`)), "node executor log lacks its shutdown line")
}
