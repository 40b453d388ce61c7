package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/executor"
	"github.com/tasker-go/tasker/executor/builtin"
)

// TestDiskFull fills the disk under a serving coordinator, for longer than
// its lease's life, while steps run, then frees it: creates are refused
// meanwhile with Unavailable naming the full disk and store nothing; the
// results that came in are held, through the lease's loss, and applied
// once the disk has room, so each step completes on the attempt that ran
// (a retry_limit of 1 leaves no second one); a refused create, retried,
// runs. The coordinator's store is on a small tmpfs mounted in a mount
// namespace of its own (unshare), which only it sees; the test writes its
// ballast there through /proc/PID/root. It needs root and unshare.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to mount a small filesystem in a mount namespace of the coordinator's own")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "store")
	require.NoError(t, os.Mkdir(mnt, 0o700))
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=1m tasker-e2e-probe "$0"`, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a filesystem in a mount namespace here: %v: %s", err, out)
	}
	coordAddr, httpAddr := freeAddr(t), freeAddr(t)
	// sh runs as "$0"=mnt "$@"=tasker coordinator ...: mount, then become
	// the coordinator, in the namespace unshare made.
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=24m tasker-e2e "$0" && exec "$@"`, mnt,
		binary, "coordinator", "--listen", coordAddr, "--http-listen", httpAddr, "--db", filepath.Join(mnt, "tasker.db"),
		"--lease-ttl", "2s", "--executor-grace", "1s", "--log-level", "debug")
	coord := startCmd(t, "coordinator", cmd, func(log []byte) {
		if bytes.Contains(log, []byte("WARNING: DATA RACE")) {
			t.Errorf("coordinator reported a data race")
		}
	})
	// The steps end when the test says: once the disk is full.
	started, release := startGatedExecutor(t, coordAddr)
	c := &cluster{t: t, coord: coordAddr}
	c.waitExecutors(1)

	filler := filepath.Join(dir, "filler.yaml")
	require.NoError(t, os.WriteFile(filler, []byte(`namespace: full
name: filler
version: 1.0.0
steps:
  - name: only
    handler: noop
`), 0o600))
	c.tasker("template", "apply", filler)
	ids := createGatedTasks(t, c, "full", 3)
	waitStarted(t, started, len(ids))

	// Fill the filesystem, then let creates use up the room SQLite's
	// write-ahead log still has, until one is refused.
	ballast := filepath.Join("/proc", fmt.Sprint(coord.cmd.Process.Pid), "root", mnt, "ballast")
	fill(t, ballast)
	pad := strings.Repeat("x", 60_000)
	refused := ""
	for i := 0; refused == "" && i < 200; i++ {
		key := fmt.Sprint("filler-", i)
		out, errOut, err := c.run("task", "create", "full/filler", "--idempotency-key", key, "--context", `{"pad":"`+pad+`"}`)
		if err != nil {
			require.Contains(t, errOut, "disk is full", "stdout: %s", out)
			require.Contains(t, errOut, "(Unavailable)")
			refused = key
		}
	}
	require.NotEmpty(t, refused, "no create was refused on a full disk")
	release()

	// The results come in and cannot be written (a write may still get
	// through now and then: SQLite reuses its log's room once a checkpoint
	// empties it), and the lease lapses, before or after they come.
	metrics := heldResultsThroughLeaseLoss(t, httpAddr, 1)

	freed := time.Now()
	require.NoError(t, os.Remove(ballast))
	requireRanOnce(t, c, ids)
	requireNothingHeld(t, metrics)
	// The refused create stored nothing: retried, it creates the task now.
	again := decodeTask(t, c.tasker("task", "create", "full/filler", "--idempotency-key", refused, "--context", `{"pad":"`+pad+`"}`, "--wait", "-o", "json"))
	require.Equal(t, "complete", again.State)
	created, err := time.Parse(time.RFC3339Nano, again.CreatedAt)
	require.NoError(t, err)
	require.False(t, created.Before(freed.Truncate(time.Second)), "created %s, disk freed %s", created, freed)
}

// fill writes path until the filesystem has no room left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "filling %s: %v", path, err)
			return
		}
	}
}

// startGatedExecutor runs an executor in this process, with the built-in
// handlers and "gated", whose attempts report their task id on started and
// end when release is called.
func startGatedExecutor(t *testing.T, coordAddr string) (started <-chan string, release func()) {
	t.Helper()
	ch, gate := make(chan string, 64), make(chan struct{})
	ex, err := executor.New(executor.Config{Capacity: 8, Coordinator: coordAddr, RegisterInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, builtin.Register(ex))
	require.NoError(t, ex.Handle("gated", func(ctx context.Context, req *executor.Request) (any, error) {
		ch <- req.TaskID
		select {
		case <-gate:
			return map[string]bool{"released": true}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ex.Serve(ctx, lis) }()
	t.Cleanup(func() { stop(); <-done })
	var once sync.Once
	return ch, func() { once.Do(func() { close(gate) }) }
}

// createGatedTasks registers NS/gated (a "gated" step with no retry, then a
// noop) and creates n of its tasks, returning their ids.
func createGatedTasks(t *testing.T, c *cluster, ns string, n int) []string {
	t.Helper()
	tmpl := filepath.Join(t.TempDir(), "gated.yaml")
	require.NoError(t, os.WriteFile(tmpl, []byte(`namespace: `+ns+`
name: gated
version: 1.0.0
steps:
  - name: work
    handler: gated
    retry_limit: 1
  - name: after
    handler: noop
    depends_on: [work]
`), 0o600))
	c.tasker("template", "apply", tmpl)
	ids := make([]string, 0, n)
	for i := range n {
		ids = append(ids, decodeTask(t, c.tasker("task", "create", ns+"/gated", "--idempotency-key", fmt.Sprint("gated-", i), "-o", "json")).ID)
	}
	return ids
}

// waitStarted waits until n gated attempts have started.
func waitStarted(t *testing.T, started <-chan string, n int) {
	t.Helper()
	for range n {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatalf("the gated steps never all started")
		}
	}
}

// heldResultsThroughLeaseLoss waits until at least min step results are
// held and the coordinator at httpAddr has lost its lease, then for eight
// more losses (past the time a result for a task not held there is
// otherwise given, two lease lives), and checks that min are still held.
// It returns a reader of the coordinator's metrics.
// requireNothingHeld waits for the coordinator to hold no result. A held
// result stops counting once its settling returns, which is after its
// commit: its task may read complete a moment before.
func requireNothingHeld(t *testing.T, metrics func() map[string]float64) {
	t.Helper()
	require.Eventually(t, func() bool { return metrics()["tasker_step_results_held"] == 0 },
		10*time.Second, 10*time.Millisecond, "results still held after their tasks completed")
}

func heldResultsThroughLeaseLoss(t *testing.T, httpAddr string, minHeld int) func() map[string]float64 {
	t.Helper()
	metrics := func() map[string]float64 {
		m, err := scrapeMetrics(t.Context(), httpAddr)
		require.NoError(t, err)
		return m
	}
	require.Eventually(t, func() bool {
		m := metrics()
		return m["tasker_step_results_held"] >= float64(minHeld) && m["tasker_lease_lost_total"] >= 1
	}, 60*time.Second, 50*time.Millisecond, "fewer than %d results held, or the lease never lapsed", minHeld)
	lost := metrics()["tasker_lease_lost_total"]
	require.Eventually(t, func() bool { return metrics()["tasker_lease_lost_total"] >= lost+8 },
		60*time.Second, 50*time.Millisecond)
	require.GreaterOrEqual(t, metrics()["tasker_step_results_held"], float64(minHeld), "the held results were dropped")
	return metrics
}

// requireRanOnce waits for each task to finish and checks it completed
// with its first step on its first attempt.
func requireRanOnce(t *testing.T, c *cluster, ids []string) {
	t.Helper()
	for _, id := range ids {
		var task taskJSON
		require.Eventually(t, func() bool {
			task = decodeTask(t, c.tasker("task", "get", id, "-o", "json"))
			return task.State == "complete" || task.State == "error"
		}, 60*time.Second, 50*time.Millisecond, "task %s never finished", id)
		require.Equal(t, "complete", task.State, "%+v", task.Steps)
		require.Equal(t, 1, task.Steps[0].Attempts, "its first step ran once: its held result was applied")
	}
}
