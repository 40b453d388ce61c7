package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

func TestTaskCreateDebounced(t *testing.T) {
	t.Parallel()
	fixture := fixtureTask(t)
	f := &fakeCoordinator{createTask: func(r *coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
		task := proto.Clone(fixture).(*coordinatorv1.Task)
		task.DebounceKey = r.GetDebounce().GetKey()
		return &coordinatorv1.CreateTaskResponse{Task: task, Created: false}, nil
	}}
	addr := serve(t, f)

	res := runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--debounce-key", "cust-7", "--debounce", "30s")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "debounced task "+fixture.GetId())
	res = runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--debounce-key", "cust-7", "--debounce", "30s", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got))
	require.Equal(t, "cust-7", got["debounce_key"])
	reqs := f.requests()
	require.Len(t, reqs, 2)
	d := reqs[0].(*coordinatorv1.CreateTaskRequest).GetDebounce()
	require.Equal(t, "cust-7", d.GetKey())
	require.Equal(t, 30*time.Second, d.GetDelay().AsDuration())

	for _, args := range [][]string{{"--debounce-key", "k"}, {"--debounce", "1s"}} {
		res = runCLI(t, addr, append([]string{"task", "create", "demo/order_fulfillment"}, args...)...)
		require.Equal(t, exitUsage, res.code)
		require.Contains(t, res.stderr, "--debounce-key and --debounce")
	}
	require.Len(t, f.requests(), 2, "refused commands send nothing")
}
