package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pythonExecutorDir is the Python example executor, relative to the repo root.
var pythonExecutorDir = filepath.Join("examples", "executor-python")

// languagesTemplate alternates the Go, Node and Python executors in one
// task, so results cross every pair of languages. tally sums total
// ({"sum":7}: wobble's {"attempt":2} plus nap's {"slept_ms":5}) and nap.
const languagesTemplate = `
namespace: interop
name: three_languages
version: 1.0.0
description: Results cross between Go, Node and Python executors.
steps:
  - name: greet
    handler: echo
  - name: shout
    handler: node_upper
    depends_on: [greet]
  - name: flip
    handler: py_reverse
    depends_on: [shout]
  - name: relay
    handler: echo
    depends_on: [flip]
  - name: wobble
    handler: py_flaky
    depends_on: [relay]
    config: {fail_times: 1}
    backoff: {initial: 10ms, multiplier: 2, max: 100ms}
  - name: nap
    handler: node_sleep
    depends_on: [greet]
    config: {ms: 5}
  - name: total
    handler: node_sum
    depends_on: [wobble, nap]
  - name: tally
    handler: py_sum
    depends_on: [total, nap]
  - name: finish
    handler: noop
    depends_on: [tally]
`

// requirePython returns a Python 3 interpreter that can import grpc and
// protobuf (Debian's python3-grpcio and python3-protobuf), trying
// $TASKER_PYTHON, python3 on PATH and /usr/bin/python3 (a python3 on PATH
// from pyenv or a virtualenv does not see Debian's packages); it skips the
// test when there is none.
func requirePython(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("TASKER_PYTHON"), "python3", "/usr/bin/python3"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		path, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = exec.CommandContext(ctx, path, "-c", "import grpc, google.protobuf").Run()
		cancel()
		if err == nil {
			return path
		}
	}
	t.Skip("skipping the three-language test: no python3 that imports grpc and google.protobuf " +
		"(apt-get install python3-grpcio python3-protobuf, or set TASKER_PYTHON)")
	return ""
}

// startPython runs the Python executor like startNode runs the Node one.
func startPython(t *testing.T, python, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(python, append([]string{"-m", "tasker_executor"}, args...)...)
	cmd.Dir = filepath.Join(repoRoot(), pythonExecutorDir)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	return startCmd(t, name, cmd, nil)
}

func TestThreeLanguagesInOneTask(t *testing.T) {
	t.Parallel()
	python := requirePython(t)
	nodeDir := requireNode(t)

	coord := freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coord, "--db", filepath.Join(t.TempDir(), "tasker.db"), "--log-level", "debug")
	c := &cluster{t: t, coord: coord}
	start(t, "executor-go", "executor", "--listen", freeAddr(t), "--coordinator", coord, "--id", "go-1", "--capacity", "4", "--log-level", "debug")
	startNode(t, nodeDir, "executor-node", "--listen", freeAddr(t), "--coordinator", coord, "--id", "node-1", "--capacity", "4", "--log-level", "debug")
	py := startPython(t, python, "executor-python", "--listen", freeAddr(t), "--coordinator", coord, "--id", "py-1", "--capacity", "4", "--log-level", "debug")

	var executors map[string]executorLine
	require.Eventually(t, func() bool {
		executors = connectedExecutors(c)
		return len(executors) == 3
	}, 30*time.Second, 100*time.Millisecond, "the Go, Node and Python executors did not all connect")
	require.Equal(t, "python", executors["py-1"].Language)
	require.Equal(t, []string{"py_flaky", "py_reverse", "py_sleep", "py_sum"}, executors["py-1"].Handlers)
	require.Equal(t, "node", executors["node-1"].Language)
	require.Equal(t, "go", executors["go-1"].Language)

	task, steps := runInterop(t, c, languagesTemplate, "interop/three_languages")
	require.Len(t, steps, 9)
	raw := func(name string) string { return string(task.Steps[steps[name]].Results) }
	results := func(name string) map[string]json.RawMessage {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(task.Steps[steps[name]].Results, &m), "%s results: %s", name, raw(name))
		return m
	}

	// Go → Node → Python: py_reverse saw the task context and node_upper's
	// results exactly as the Node step stored them.
	require.JSONEq(t, `"HELLO"`, string(results("shout")["upper"]))
	flip := results("flip")
	require.JSONEq(t, `"olleh"`, string(flip["reversed"]))
	require.JSONEq(t, `{"shout":`+raw("shout")+`}`, string(flip["parents"]))

	// Python → Go: the Go echo after py_reverse received its results intact.
	var relayParents map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(results("relay")["parents"], &relayParents))
	require.JSONEq(t, raw("flip"), string(relayParents["flip"]))

	// py_flaky failed its first attempt retryably, with its own class, and
	// the coordinator retried it.
	wobble := task.Steps[steps["wobble"]]
	require.Equal(t, 2, wobble.Attempts)
	require.JSONEq(t, `{"attempt":2}`, raw("wobble"))
	var failed []string
	for _, tr := range wobble.Transitions {
		if tr.To == "error" {
			failed = append(failed, tr.Reason)
		}
	}
	require.Len(t, failed, 1, "one failed attempt before the success")
	require.Contains(t, failed[0], "py_flaky: attempt 1 fails on purpose")

	// Python → Node → Python: node_sum added a Python and a Node result;
	// py_sum added node_sum's and node_sleep's.
	require.JSONEq(t, `{"sum":7}`, raw("total"))
	require.JSONEq(t, `{"sum":12}`, raw("tally"))

	// Each step ran on the executor of its language.
	for _, s := range task.Steps {
		want := "go-1"
		switch {
		case strings.HasPrefix(s.Handler, "node_"):
			want = "node-1"
		case strings.HasPrefix(s.Handler, "py_"):
			want = "py-1"
		}
		for _, tr := range s.Transitions {
			if tr.To == "in_progress" {
				require.True(t, strings.HasSuffix(tr.Reason, " "+want), "%s: %q", s.Name, tr.Reason)
			}
		}
	}

	// The Python executor shuts down gracefully on SIGINT.
	py.stop(15 * time.Second)
	require.True(t, py.cmd.ProcessState.Success(), "python executor exit: %s", py.cmd.ProcessState)
	logText, err := os.ReadFile(py.log)
	require.NoError(t, err)
	require.True(t, bytes.Contains(logText, []byte(`msg="executor stopped"`)), "python executor log lacks its shutdown line")
}
