package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// After an outage an operator retries every task it failed at once, and
// cancels a backlog: task retry --all and task cancel --all against a real
// coordinator and executor. Without --yes they only list; the filters keep
// other templates' tasks out.
func TestTaskBulkRetryAndCancel(t *testing.T) {
	t.Parallel()
	rc := startWithExecutor(t, 8)
	for _, tmpl := range []string{
		// Attempt 1 fails and no retry is left: the task ends in error; a
		// task retry's fresh attempt succeeds.
		`{namespace: demo, name: flaky, version: 1.0.0, steps: [{name: call, handler: flaky, retry_limit: 1, config: {fail_times: 1}}]}`,
		`{namespace: demo, name: other, version: 1.0.0, steps: [{name: call, handler: flaky, retry_limit: 1, config: {fail_times: 1}}]}`,
		`{namespace: demo, name: slow, version: 1.0.0, steps: [{name: wait, handler: sleep, config: {ms: 3600000}}]}`,
	} {
		res := runCLI(t, rc.addr, "template", "apply", writeFile(t, "t.yaml", tmpl))
		require.Equal(t, 0, res.code, res.stderr)
	}
	create := func(name, key string, wantCode int) string {
		t.Helper()
		args := []string{"task", "create", "demo/" + name, "--idempotency-key", key, "-o", "json"}
		if wantCode >= 0 {
			args = append(args, "--wait")
		}
		res := runCLI(t, rc.addr, args...)
		require.Equal(t, max(wantCode, 0), res.code, res.stderr)
		var task taskJSON
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &task), res.stdout)
		return task.ID
	}
	const exitError = 3 // task create --wait of a task that ended in error
	var failed []string
	for _, key := range []string{"f1", "f2", "f3"} {
		failed = append(failed, create("flaky", key, exitError))
	}
	other := create("other", "o1", exitError)
	stateOf := func(id string) string {
		res := runCLI(t, rc.addr, "task", "get", id, "-o", "json")
		require.Equal(t, 0, res.code, res.stderr)
		var task taskJSON
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &task), res.stdout)
		return task.State
	}

	// Without --yes: the tasks it would retry, and nothing done.
	res := runCLI(t, rc.addr, "task", "retry", "--all", "--name", "flaky")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "3 task(s) would be retried; run again with --yes to retry them\n", res.stderr)
	for _, id := range failed {
		require.Contains(t, res.stdout, id)
		require.Equal(t, "error", stateOf(id))
	}
	require.NotContains(t, res.stdout, other)

	res = runCLI(t, rc.addr, "task", "retry", "--all", "--name", "flaky", "--yes", "--reason", "partner API back", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "retried 3 of 3 task(s)\n", res.stderr)
	var retried []string
	for line := range strings.Lines(res.stdout) {
		var r bulkResult
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		require.Equal(t, "retried", r.Result, line)
		require.Empty(t, r.Error, line)
		retried = append(retried, r.ID)
	}
	require.ElementsMatch(t, failed, retried)
	for _, id := range failed {
		require.Eventually(t, func() bool { return stateOf(id) == "complete" }, 20*time.Second, 10*time.Millisecond)
		res := runCLI(t, rc.addr, "task", "get", id, "-o", "json")
		require.Contains(t, res.stdout, `"reason":"partner API back"`)
	}
	require.Equal(t, "error", stateOf(other), "another template's task is left alone")

	res = runCLI(t, rc.addr, "task", "retry", "--all", "--name", "flaky", "--yes")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "no task in error matches\n", res.stderr)
	require.Empty(t, res.stdout)

	// cancel --all takes pending and in_progress tasks.
	slow := []string{create("slow", "s1", -1), create("slow", "s2", -1)}
	res = runCLI(t, rc.addr, "task", "cancel", "--all", "--namespace", "demo", "--name", "slow", "--yes", "--reason", "backlog dropped")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "cancelled 2 of 2 task(s)\n", res.stderr)
	for _, id := range slow {
		require.Contains(t, res.stdout, id+"  cancelled\n")
		require.Equal(t, "cancelled", stateOf(id))
	}
	require.Equal(t, "error", stateOf(other))
}

// A task that another operator moved between the listing and the action is
// refused by the coordinator: that task is reported and the rest go on,
// and the exit status says not all were done.
func TestTaskBulkRetryReportsEachRefusal(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{
		listTasks: func(r *coordinatorv1.ListTasksRequest) (*coordinatorv1.ListTasksResponse, error) {
			return &coordinatorv1.ListTasksResponse{Tasks: []*coordinatorv1.Task{
				{Id: "t-1", State: coordinatorv1.State_STATE_ERROR},
				{Id: "t-2", State: coordinatorv1.State_STATE_ERROR},
				{Id: "t-3", State: coordinatorv1.State_STATE_ERROR},
			}}, nil
		},
		retryTask: func(r *coordinatorv1.RetryTaskRequest) (*coordinatorv1.RetryTaskResponse, error) {
			if r.GetId() == "t-2" {
				return nil, status.Error(codes.FailedPrecondition, "task t-2 is pending; only a task in error can be retried")
			}
			return &coordinatorv1.RetryTaskResponse{Task: &coordinatorv1.Task{Id: r.GetId(), State: coordinatorv1.State_STATE_PENDING}}, nil
		},
	}
	addr := serve(t, f)

	res := runCLI(t, addr, "task", "retry", "--all", "--namespace", "billing", "--since", "2026-12-01T00:00:00Z", "--yes")
	require.Equal(t, 1, res.code)
	require.Equal(t, "t-1  retried\n"+
		"t-2  not retried: task t-2 is pending; only a task in error can be retried (FailedPrecondition)\n"+
		"t-3  retried\n", res.stdout)
	require.Equal(t, "retried 2 of 3 task(s)\ntasker: 1 task(s) not retried (each named above)\n", res.stderr)

	reqs := f.requests()
	require.Len(t, reqs, 4)
	list, ok := reqs[0].(*coordinatorv1.ListTasksRequest)
	require.True(t, ok, "%T", reqs[0])
	require.Equal(t, coordinatorv1.State_STATE_ERROR, list.GetState())
	require.Equal(t, "billing", list.GetNamespace())
	require.Equal(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), list.GetCreatedAfter().AsTime())
	var ids []string
	for _, r := range reqs[1:] {
		ids = append(ids, r.(*coordinatorv1.RetryTaskRequest).GetId())
	}
	require.Equal(t, []string{"t-1", "t-2", "t-3"}, ids)
}

func TestTaskBulkUsageErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"task", "retry", "t-1", "--all"}, "give a task ID or --all, not both"},
		{[]string{"task", "retry", "--name", "flaky"}, "--name filters the tasks of --all; give --all too, or a task ID alone"},
		{[]string{"task", "cancel", "t-1", "--since", "1h"}, "--since filters the tasks of --all"},
		{[]string{"task", "retry", "t-1", "--yes"}, "--yes goes with --all"},
		{[]string{"task", "cancel"}, "accepts 1 arg(s), received 0"},
	} {
		res := runCLI(t, "127.0.0.1:1", c.args...)
		require.Equal(t, 2, res.code, "%v: %s", c.args, res.stderr)
		require.Contains(t, res.stderr, c.want, c.args)
		require.True(t, slices.Contains(strings.Fields(res.stderr), "usage."), "%v points at the usage: %s", c.args, res.stderr)
	}
}
