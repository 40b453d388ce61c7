package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBackupAndRestore backs a serving coordinator's store up with
// `tasker backup` while a step runs, kills the coordinator, and starts a
// new one on the backup, as an operator restoring it would: the tasks the
// backup holds are there as they were, the task that was running
// finishes, and a task created after the backup is gone.
func TestBackupAndRestore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "tasker.db")
	coordAddr := freeAddr(t)
	coordArgs := func(db string) []string {
		return []string{"coordinator", "--listen", coordAddr, "--db", db, "--id", "restore", "--executor-grace", "1s", "--log-level", "debug"}
	}
	coord := start(t, "coordinator", coordArgs(db)...)
	// The slow task's first step is gated, not timed: it must still be
	// running when the backup is taken however long the backup takes on a
	// loaded machine (a 3 s sleep once ended first, and the backup held
	// the task complete).
	started, release := startGatedExecutor(t, coordAddr)
	c := &cluster{t: t, coord: coordAddr}
	c.waitExecutors(1)

	quick, slowTmpl := filepath.Join(dir, "quick.yaml"), filepath.Join(dir, "slow.yaml")
	require.NoError(t, os.WriteFile(quick, []byte(`namespace: backup
name: quick
version: 1.0.0
steps:
  - name: one
    handler: noop
  - name: two
    handler: echo
    depends_on: [one]
`), 0o600))
	require.NoError(t, os.WriteFile(slowTmpl, []byte(`namespace: backup
name: slow
version: 1.0.0
steps:
  - name: wait
    handler: gated
  - name: after
    handler: noop
    depends_on: [wait]
`), 0o600))
	c.tasker("template", "apply", quick, slowTmpl)

	before := decodeTask(t, c.tasker("task", "create", "backup/quick", "--context", `{"n":"before"}`, "--wait", "-o", "json"))
	require.Equal(t, "complete", before.State)
	slow := decodeTask(t, c.tasker("task", "create", "backup/slow", "--context", `{"n":"slow"}`, "-o", "json"))
	waitStarted(t, started, 1)
	require.Eventually(t, func() bool {
		task := decodeTask(t, c.tasker("task", "get", slow.ID, "-o", "json"))
		return task.Steps[0].State == "in_progress"
	}, 30*time.Second, 50*time.Millisecond, "the slow step never started")

	backup := filepath.Join(dir, "backup.db")
	out, errOut, err := c.run("backup", "--db", db, backup, "-o", "json")
	require.NoError(t, err, "stdout: %s\nstderr: %s", out, errOut)
	var info struct {
		Backup    string `json:"backup"`
		Tasks     int    `json:"tasks"`
		Steps     int    `json:"steps"`
		LastEvent string `json:"last_event"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &info), out)
	require.Equal(t, backup, info.Backup)
	require.Equal(t, 2, info.Tasks)
	require.Equal(t, 4, info.Steps)
	require.NotEmpty(t, info.LastEvent)

	// Written after the backup: the restore will not have it.
	after := decodeTask(t, c.tasker("task", "create", "backup/quick", "--context", `{"n":"after"}`, "--wait", "-o", "json"))
	require.Equal(t, "complete", after.State)

	lastCursor := func() string {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(c.tasker("events", "-o", "json")), "\n")
		var e struct {
			Cursor string `json:"cursor"`
		}
		require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &e))
		return e.Cursor
	}
	undone := lastCursor() // the "after" task's last event, which the restore undoes

	coord.kill()
	start(t, "coordinator-restored", coordArgs(backup)...)
	c.waitExecutors(1) // the executor reconnects to the restored coordinator

	got := decodeTask(t, c.tasker("task", "get", before.ID, "-o", "json"))
	require.Equal(t, "complete", got.State)
	require.JSONEq(t, `{"n":"before"}`, mustJSON(t, got.Context))

	_, errOut, err = c.run("task", "get", after.ID)
	require.Error(t, err)
	require.Contains(t, errOut, "NotFound")

	// The step that was running at the backup runs to its end on the
	// restored coordinator, and its task completes.
	release()
	out, errOut, err = c.run("task", "watch", slow.ID, "--timeout", "60s")
	require.NoError(t, err, "stdout: %s\nstderr: %s", out, errOut)
	done := decodeTask(t, c.tasker("task", "get", slow.ID, "-o", "json"))
	require.Equal(t, "complete", done.State)
	for _, s := range done.Steps {
		require.Equal(t, "complete", s.State, s.Name)
		t.Logf("step %s: %d attempts", s.Name, s.Attempts)
	}

	// A subscriber that read the undone events is told so, and where to
	// resume; from there it reads what the restored coordinator did.
	_, errOut, err = c.run("events", "--after", undone)
	require.Error(t, err)
	require.Contains(t, errOut, "cursor "+undone+" was handed out before this store was restored from a backup that ends at cursor "+info.LastEvent)
	require.Contains(t, errOut, "OutOfRange")
	resumed := c.tasker("events", "--after", info.LastEvent, "-o", "json")
	require.Contains(t, resumed, `"task_id":"`+slow.ID+`"`)
	require.Contains(t, resumed, `"reason":"all steps complete"`)
	require.NotContains(t, resumed, after.ID)

	// The restored store takes new work.
	again := decodeTask(t, c.tasker("task", "create", "backup/quick", "--context", `{"n":"restored"}`, "--wait", "-o", "json"))
	require.Equal(t, "complete", again.State)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
