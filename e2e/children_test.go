//go:build unix

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

// TestChildTaskSurvivesKill9ThroughCLI: real processes on one SQLite
// file. A parent's step runs a child task whose own step sleeps; the
// coordinator is killed (kill -9) while the child runs and started again.
// The parent completes with the child's results, exactly one child was
// created, and `tasker task get` shows the links both ways.
func TestChildTaskSurvivesKill9ThroughCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	coordAddr := freeAddr(t)
	coordArgs := []string{"coordinator", "--listen", coordAddr, "--db", filepath.Join(dir, "tasker.db"), "--log-level", "debug"}
	coord := start(t, "coordinator-run1", coordArgs...)
	start(t, "executor", "executor", "--listen", freeAddr(t), "--coordinator", coordAddr, "--id", "exec-1",
		"--capacity", "4", "--log-level", "debug")
	c := &cluster{t: t, coord: coordAddr}
	require.Eventually(t, func() bool {
		out, _, err := c.run("executors", "-o", "json")
		return err == nil && strings.Contains(out, `"connected":true`)
	}, 30*time.Second, 100*time.Millisecond, "the executor did not connect")

	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		return path
	}
	// The child template must exist first: a parent naming a missing one
	// is refused at registration.
	parentYAML := write("parent.yaml", `
namespace: e2e
name: order
version: 1.0.0
steps:
  - name: charge
    task: e2e/charge
    context:
      order: context.order_id
  - name: ship
    depends_on: [charge]
    handler: echo
`)
	_, errOut, err := c.run("template", "apply", parentYAML)
	require.Error(t, err)
	require.Contains(t, errOut, "template e2e/charge is not registered")
	c.tasker("template", "apply", write("child.yaml", `
namespace: e2e
name: charge
version: 1.0.0
steps:
  - name: authorize
    handler: sleep
    config: {ms: 1500}
  - name: capture
    depends_on: [authorize]
    handler: echo
`))
	c.tasker("template", "apply", parentYAML)

	created := strings.Fields(c.tasker("task", "create", "e2e/order", "--context", `{"order_id":"O-9"}`))
	require.Equal(t, []string{"created", "task"}, created[:2])
	parentID := created[2]

	listChildren := func() []taskJSON {
		out, _, err := c.run("task", "list", "--namespace", "e2e", "--name", "charge", "-o", "json")
		if err != nil {
			return nil // restarting
		}
		var kids []taskJSON
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var k taskJSON
			require.NoError(t, json.Unmarshal([]byte(line), &k), line)
			kids = append(kids, k)
		}
		return kids
	}
	require.Eventually(t, func() bool { return len(listChildren()) == 1 }, 30*time.Second, 20*time.Millisecond, "the child was never created")

	coord.kill()
	start(t, "coordinator-run2", coordArgs...)

	var parent childLinksJSON
	require.Eventually(t, func() bool {
		out, _, err := c.run("task", "get", parentID, "-o", "json")
		if err != nil {
			return false
		}
		require.NoError(t, json.Unmarshal([]byte(out), &parent), out)
		return parent.State == "complete"
	}, 60*time.Second, 100*time.Millisecond, "the parent did not complete after the restart")

	kids := listChildren()
	require.Len(t, kids, 1, "exactly one child, across the kill")
	require.Equal(t, "complete", kids[0].State)
	require.Equal(t, kids[0].ID, parent.Steps[0].ChildTaskID)
	require.Equal(t, "O-9", kids[0].Context["order"], "the child got the mapped context")
	var results map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(parent.Steps[0].Results, &results))
	require.Contains(t, results, "authorize")
	require.Contains(t, results, "capture")

	var child childLinksJSON
	require.NoError(t, json.Unmarshal([]byte(c.tasker("task", "get", kids[0].ID, "-o", "json")), &child))
	require.Equal(t, parentID, child.ParentTaskID)
	require.Equal(t, "charge", child.ParentStep)
	require.Contains(t, c.tasker("task", "get", kids[0].ID), "child of "+parentID+" step charge")
	require.Contains(t, c.tasker("task", "get", parentID), "child task "+kids[0].ID)
}

// childLinksJSON is the part of `task get -o json` that links parents and
// children.
type childLinksJSON struct {
	State        string `json:"state"`
	ParentTaskID string `json:"parent_task_id"`
	ParentStep   string `json:"parent_step"`
	Steps        []struct {
		Name        string          `json:"name"`
		ChildTaskID string          `json:"child_task_id"`
		Results     json.RawMessage `json:"results"`
	} `json:"steps"`
}
