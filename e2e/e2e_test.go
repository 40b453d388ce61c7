// Package e2e builds the real tasker binary and drives coordinator and
// executor processes through the CLI only, as an operator would.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binary is the tasker binary built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tasker-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tasker")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/tasker")...)
	build.Dir = repoRoot()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tasker:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. It is drawn below Linux's ephemeral range (32768 and up by
// default): a port the kernel handed out there can be taken again, before
// the process meant to listen on it starts, as the source port of any
// outgoing connection, which the tests make by the thousand; a chaos run
// failed on exactly that ("bind: address already in use").
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken: draw again
		}
		addr := lis.Addr().String()
		require.NoError(t, lis.Close())
		return addr
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// process is a tasker server process whose output goes to a log file.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the process has exited and been reaped
}

// logTail bounds how much of a process log a failed test prints, so a long
// chaos run with many processes stays readable.
const logTail = 64 << 10

// start runs tasker with args in the background; it is stopped when the test
// ends, its log is checked for data races, and the log's tail is printed if
// the test failed.
func start(t *testing.T, name string, args ...string) *process {
	t.Helper()
	return startCmd(t, name, exec.Command(binary, args...), func(log []byte) {
		if bytes.Contains(log, []byte("WARNING: DATA RACE")) {
			t.Errorf("%s reported a data race", name)
		}
	})
}

// startCmd runs cmd in the background with its output in a log file. When
// the test ends it is stopped (SIGINT, then a kill after 10 s), check (if
// any) reads its log, and the log's tail is printed if the test failed.
func startCmd(t *testing.T, name string, cmd *exec.Cmd, check func(log []byte)) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		b, _ := os.ReadFile(logPath)
		if check != nil {
			check(b)
		}
		if t.Failed() {
			if len(b) > logTail {
				b = append([]byte("[...]"), b[len(b)-logTail:]...)
			}
			t.Logf("--- %s log ---\n%s", name, b)
		}
	})
	return p
}

// stop asks the process to shut down gracefully and kills it if it has not
// exited within d. It returns once the process is gone.
func (p *process) stop(d time.Duration) {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill is kill -9: the process gets no chance to flush, close streams or
// say goodbye. It returns once the process is gone.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// cluster is one coordinator process and its executors.
type cluster struct {
	t     *testing.T
	coord string
}

// tasker runs a CLI command against the cluster and returns stdout; it fails
// the test on a non-zero exit unless allowFail.
func (c *cluster) run(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(args, "--coordinator", c.coord)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (c *cluster) tasker(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	require.NoError(c.t, err, "tasker %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), out, errOut)
	return out
}

func startCluster(t *testing.T, executors int) *cluster {
	t.Helper()
	coord := freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coord, "--db", filepath.Join(t.TempDir(), "tasker.db"), "--log-level", "debug")
	c := &cluster{t: t, coord: coord}
	for i := 1; i <= executors; i++ {
		start(t, fmt.Sprintf("executor-%d", i), "executor", "--listen", freeAddr(t), "--coordinator", coord,
			"--id", fmt.Sprintf("exec-%d", i), "--capacity", "8", "--log-level", "debug")
	}
	c.waitExecutors(executors)
	return c
}

// waitExecutors waits until the coordinator lists n executors connected.
func (c *cluster) waitExecutors(n int) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		out, _, err := c.run("executors", "-o", "json")
		return err == nil && strings.Count(out, `"connected":true`) == n
	}, 30*time.Second, 100*time.Millisecond, "%d executors did not connect", n)
}

// The -o json shape scripts depend on.
type taskJSON struct {
	ID          string         `json:"id"`
	Namespace   string         `json:"namespace"`
	Name        string         `json:"name"`
	Version     string         `json:"version"`
	State       string         `json:"state"`
	Context     map[string]any `json:"context"`
	CreatedAt   string         `json:"created_at"`
	CompletedAt *string        `json:"completed_at"`
	RunAt       string         `json:"run_at"`
	Priority    int            `json:"priority"`
	// A child task's parent; omitted for others.
	ParentTaskID string `json:"parent_task_id"`
	ParentStepID string `json:"parent_step_id"`
	ParentStep   string `json:"parent_step"`
	Steps        []struct {
		Name      string          `json:"name"`
		Handler   string          `json:"handler"`
		DependsOn []string        `json:"depends_on"`
		State     string          `json:"state"`
		Attempts  int             `json:"attempts"`
		Results   json.RawMessage `json:"results"`
		Error     *struct {
			Message   string `json:"message"`
			Class     string `json:"class"`
			Retryable bool   `json:"retryable"`
		} `json:"error"`
		Transitions []struct {
			From   *string `json:"from"`
			To     string  `json:"to"`
			At     string  `json:"at"`
			Reason string  `json:"reason"`
		} `json:"transitions"`
		Waiting *struct {
			Reason  string   `json:"reason"`
			On      []string `json:"on"`
			Until   string   `json:"until"`
			Handler string   `json:"handler"`
			Key     string   `json:"key"`
		} `json:"waiting"`
		InstanceOf  string `json:"instance_of"`
		Index       *int   `json:"index"`
		ChildTaskID string `json:"child_task_id"`
	} `json:"steps"`
}

func decodeTask(t *testing.T, out string) taskJSON {
	t.Helper()
	var task taskJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&task), out)
	return task
}

func TestClusterThroughCLI(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2)
	files, err := filepath.Glob(filepath.Join(repoRoot(), "examples", "templates", "*.yaml"))
	require.NoError(t, err)
	require.Len(t, files, 7)
	out := c.tasker(append([]string{"template", "apply"}, files...)...)
	require.Equal(t, 7, strings.Count(out, "registered "), out)

	// The order demo: flaky charge retried once, the rest in one attempt.
	out = c.tasker("task", "create", "demo/order_fulfillment", "--context", `{"order_id":"A-1"}`, "--wait", "-o", "json")
	task := decodeTask(t, out)
	require.Equal(t, "complete", task.State)
	require.Equal(t, "demo", task.Namespace)
	require.Equal(t, "order_fulfillment", task.Name)
	require.Equal(t, "1.0.0", task.Version)
	require.Equal(t, "A-1", task.Context["order_id"])
	require.NotNil(t, task.CompletedAt)
	created, err := time.Parse(time.RFC3339Nano, task.CreatedAt)
	require.NoError(t, err)
	completed, err := time.Parse(time.RFC3339Nano, *task.CompletedAt)
	require.NoError(t, err)
	require.False(t, completed.Before(created))
	require.Len(t, task.Steps, 4)
	byName := map[string]int{}
	for i, s := range task.Steps {
		byName[s.Name] = i
		require.Equal(t, "complete", s.State, s.Name)
		require.NotNil(t, s.DependsOn, "depends_on is [] not null")
		require.Nil(t, s.Error, s.Name)
		require.NotEmpty(t, s.Transitions)
		for _, tr := range s.Transitions {
			_, err := time.Parse(time.RFC3339Nano, tr.At)
			require.NoError(t, err)
			require.NotEmpty(t, tr.Reason)
		}
	}
	require.Equal(t, 2, task.Steps[byName["charge"]].Attempts)
	require.Equal(t, 1, task.Steps[byName["ship"]].Attempts)
	require.JSONEq(t, `{"slept_ms":50}`, string(task.Steps[byName["reserve"]].Results))

	// get returns the same task in the same shape.
	again := decodeTask(t, c.tasker("task", "get", task.ID, "-o", "json"))
	require.Equal(t, task, again)

	// The five reference shapes, run at once.
	shapes := []string{"linear_workflow", "diamond_workflow", "tree_workflow", "parallel_merge_workflow", "mixed_workflow"}
	type result struct {
		out string
		err error
	}
	results := make(chan result, len(shapes))
	for _, s := range shapes {
		go func() {
			out, errOut, err := c.run("task", "create", "tasker/"+s, "--context", fmt.Sprintf(`{"shape":%q}`, s), "--wait", "-o", "json")
			if err != nil {
				err = fmt.Errorf("%s: %w: %s", s, err, errOut)
			}
			results <- result{out, err}
		}()
	}
	executorsUsed := map[string]bool{}
	for range shapes {
		r := <-results
		require.NoError(t, r.err)
		task := decodeTask(t, r.out)
		require.Equal(t, "complete", task.State, task.Name)
		for _, s := range task.Steps {
			require.Equal(t, "complete", s.State)
			for _, tr := range s.Transitions {
				if tr.To == "in_progress" {
					executorsUsed[tr.Reason[strings.LastIndex(tr.Reason, " ")+1:]] = true
				}
			}
		}
	}
	require.Equal(t, map[string]bool{"exec-1": true, "exec-2": true}, executorsUsed, "steps are balanced across both executors")

	// list: one JSON object per line.
	out = c.tasker("task", "list", "--state", "complete", "-o", "json")
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		require.Equal(t, "complete", decodeTask(t, sc.Text()).State)
		lines++
	}
	require.Equal(t, 6, lines)

	// Idempotent create through the CLI.
	first := decodeTask(t, c.tasker("task", "create", "tasker/linear_workflow", "--context", `{}`, "--idempotency-key", "k-1", "-o", "json"))
	second := decodeTask(t, c.tasker("task", "create", "tasker/linear_workflow", "--context", `{"other":1}`, "--idempotency-key", "k-1", "-o", "json"))
	require.Equal(t, first.ID, second.ID)

	// Bad input: a clear error and a non-zero exit.
	_, errOut, err := c.run("task", "create", "demo/order_fulfillment", "--context", `{"order_id":7}`)
	require.Error(t, err)
	require.Contains(t, errOut, "order_id")
	require.Contains(t, errOut, "InvalidArgument")
}

func TestOperatorActionsThroughCLI(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 1)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	c.tasker("template", "apply", write("ops.yaml", `
namespace: ops
name: slow
version: 1.0.0
steps:
  - name: wait
    handler: sleep
    config: {ms: 60000}
  - name: after
    handler: noop
    depends_on: [wait]
`), write("broken.json", `{"namespace":"ops","name":"broken","version":"1.0.0","steps":[
  {"name":"fail","handler":"flaky","config":{"fail_times":99,"permanent":true}},
  {"name":"after","handler":"echo","depends_on":["fail"]}]}`))

	// Cancel a running task.
	slow := decodeTask(t, c.tasker("task", "create", "ops/slow", "--context", `{}`, "-o", "json"))
	require.Eventually(t, func() bool {
		out, _, err := c.run("task", "get", slow.ID, "-o", "json")
		return err == nil && decodeTask(t, out).Steps[0].State == "in_progress"
	}, 20*time.Second, 50*time.Millisecond)
	c.tasker("task", "cancel", slow.ID, "--reason", "e2e")
	got := decodeTask(t, c.tasker("task", "get", slow.ID, "-o", "json"))
	require.Equal(t, "cancelled", got.State)
	require.Equal(t, "cancelled", got.Steps[0].State)
	require.Equal(t, "cancelled", got.Steps[1].State)

	// A permanent failure errors the task; resolving the step by hand lets
	// its child run and the task complete.
	_, errOut, err := c.run("task", "create", "ops/broken", "--context", `{}`, "--wait", "-o", "json")
	require.Error(t, err, "a task that ends in error exits non-zero")
	require.Contains(t, errOut, "error")
	list := c.tasker("task", "list", "--state", "error", "-o", "json")
	broken := decodeTask(t, strings.TrimSpace(list))
	require.Equal(t, "error", broken.Steps[0].State)
	require.NotNil(t, broken.Steps[0].Error)
	require.False(t, broken.Steps[0].Error.Retryable)
	require.Equal(t, "pending", broken.Steps[1].State)
	c.tasker("step", "resolve", broken.ID, "fail", "--reason", "handled by hand", "--results", `{"manual":true}`)
	require.Eventually(t, func() bool {
		out, _, err := c.run("task", "get", broken.ID, "-o", "json")
		return err == nil && decodeTask(t, out).State == "complete"
	}, 20*time.Second, 50*time.Millisecond)
	done := decodeTask(t, c.tasker("task", "get", broken.ID, "-o", "json"))
	require.Equal(t, "resolved_manually", done.Steps[0].State)
	require.Contains(t, string(done.Steps[1].Results), `"manual":true`, "the child saw the resolved step's results")

	// watch prints transitions until the task is terminal.
	out := c.tasker("task", "watch", broken.ID)
	require.Contains(t, out, "resolved_manually")
	require.Contains(t, out, "complete")
}
