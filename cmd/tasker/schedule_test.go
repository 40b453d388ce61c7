package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The schedule commands against a real coordinator, and the same RPCs over
// REST.
func TestScheduleCommands(t *testing.T) {
	t.Parallel()
	a := startREST(t, coordinatorOptions{})
	a.registerTemplates("")
	addr := a.rc.addr

	res := runCLI(t, addr, "schedule", "create", "nightly", "--template", "rest/flow@1.0.0", "--cron", "30 2 * * *",
		"--timezone", "Europe/Paris", "--context", `{"region":"eu"}`, "--overlap", "buffer_one", "--catchup-window", "2h")
	require.Equal(t, 0, res.code, res.stderr)
	require.True(t, strings.HasPrefix(res.stdout, "created schedule nightly ("), res.stdout)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cron", "0 0 L * *"}, "cron:"},
		{[]string{"--cron", "* * * * *", "--timezone", "Nowhere/Else"}, "timezone:"},
		{[]string{"--cron", "* * * * *", "--overlap", "queue"}, "overlap:"},
		{[]string{"--cron", "* * * * *", "--template", "rest/none"}, "template:"},
	} {
		args := append([]string{"schedule", "create", "bad", "--template", "rest/flow"}, tc.args...)
		res := runCLI(t, addr, args...)
		require.Equal(t, 1, res.code, "%v: %s", tc.args, res.stdout)
		require.Contains(t, res.stderr, tc.want)
		require.Contains(t, res.stderr, "InvalidArgument")
	}
	res = runCLI(t, addr, "schedule", "create", "nightly", "--template", "rest/flow", "--cron", "@daily")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "AlreadyExists")

	res = runCLI(t, addr, "schedule", "get", "nightly", "-o", "json", "--next", "3")
	require.Equal(t, 0, res.code, res.stderr)
	var got struct {
		Name          string         `json:"name"`
		Template      string         `json:"template"`
		Timezone      string         `json:"timezone"`
		Overlap       string         `json:"overlap"`
		CatchupWindow string         `json:"catchup_window"`
		Context       map[string]any `json:"context"`
		NextFireTimes []string       `json:"next_fire_times"`
		Runs          []any          `json:"runs"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got), res.stdout)
	require.Equal(t, "rest/flow@1.0.0", got.Template)
	require.Equal(t, "buffer_one", got.Overlap)
	require.Equal(t, "2h0m0s", got.CatchupWindow)
	require.Equal(t, map[string]any{"region": "eu"}, got.Context)
	require.Len(t, got.NextFireTimes, 3)
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	for _, s := range got.NextFireTimes {
		at, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		require.Equal(t, "02:30", at.In(paris).Format("15:04"))
	}
	require.Empty(t, got.Runs)

	// Three past nights, twice: the second creates nothing.
	res = runCLI(t, addr, "schedule", "backfill", "nightly", "--from", "2026-01-10T00:00:00Z", "--to", "2026-01-12T23:59:59Z", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var bf struct {
		Created  []map[string]any `json:"created"`
		Existing int              `json:"existing"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &bf))
	require.Len(t, bf.Created, 3)
	require.Equal(t, "2026-01-12T01:30:00Z", bf.Created[2]["fire_time"], "02:30 in Paris in winter")
	res = runCLI(t, addr, "schedule", "backfill", "nightly", "--from", "2026-01-10T00:00:00Z", "--to", "2026-01-12T23:59:59Z")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "backfilled 0 fire times; 3 had a task already\n", res.stdout)
	res = runCLI(t, addr, "schedule", "backfill", "nightly", "--from", "1h", "--to", "2h")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "from:")

	res = runCLI(t, addr, "schedule", "pause", "nightly")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "paused schedule nightly\n", res.stdout)
	res = runCLI(t, addr, "schedule", "list")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "nightly")
	require.Contains(t, res.stdout, "true")
	res = runCLI(t, addr, "schedule", "resume", "nightly")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "resumed schedule nightly")
	res = runCLI(t, addr, "schedule", "get", "nightly")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "LATEST RUNS")
	require.Regexp(t, `FIRE TIME\s+TASK\s+STATE\s+SKIPPED`, res.stdout)
	// Each run that created a task says how that task stands now.
	res = runCLI(t, addr, "schedule", "get", "nightly", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var detail struct {
		Runs []struct {
			TaskID    string `json:"task_id"`
			TaskState string `json:"task_state"`
		} `json:"runs"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &detail))
	withTasks := 0
	for _, r := range detail.Runs {
		if r.TaskID != "" {
			withTasks++
			require.Contains(t, []string{"pending", "in_progress", "complete"}, r.TaskState, "run of task %s", r.TaskID)
		}
	}
	require.Equal(t, 3, withTasks)

	// REST: the same schedule by its rules.
	var rest struct {
		Schedule struct {
			Name   string `json:"name"`
			Paused bool   `json:"paused"`
		} `json:"schedule"`
		NextFireTimes []string `json:"nextFireTimes"`
		Runs          []struct {
			TaskID string `json:"taskId"`
		} `json:"runs"`
	}
	a.call(http.MethodGet, "/api/v1/schedules/nightly", "", nil, &rest)
	require.Equal(t, "nightly", rest.Schedule.Name)
	require.Len(t, rest.NextFireTimes, 5)
	require.Len(t, rest.Runs, 3)
	a.call(http.MethodPost, "/api/v1/schedules/nightly:pause", "", map[string]any{}, &rest)
	require.True(t, rest.Schedule.Paused)
	a.refused(http.MethodPost, "/api/v1/schedules", "", map[string]any{
		"name": "x", "namespace": "rest", "template": "flow", "cron": "not cron",
	}, http.StatusBadRequest, 3, "cron:")

	res = runCLI(t, addr, "schedule", "delete", "nightly")
	require.Equal(t, 0, res.code, res.stderr)
	res = runCLI(t, addr, "schedule", "get", "nightly")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "NotFound")
}
