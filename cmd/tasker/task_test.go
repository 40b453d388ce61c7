package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

func TestTaskCreate(t *testing.T) {
	t.Parallel()
	fixture := fixtureTask(t)
	f := &fakeCoordinator{createTask: func(r *coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
		task := proto.Clone(fixture).(*coordinatorv1.Task)
		task.Context = r.GetContext()
		return &coordinatorv1.CreateTaskResponse{Task: task, Created: r.GetIdempotencyKey() == "k-1"}, nil
	}}
	addr := serve(t, f)

	res := runCLI(t, addr, "task", "create", "demo/order_fulfillment@1.0.0",
		"--context", `{"order_id": "A1", "items": [1, 2], "gift": {"wrap": true}}`,
		"--idempotency-key", "k-1", "--bypass", "reserve", "--bypass", "ship")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "created task t-1 demo/order_fulfillment@1.0.0\n", res.stdout)

	res = runCLI(t, addr, "task", "create", "demo/order_fulfillment", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got))
	require.Equal(t, "t-1", got["id"])
	require.Equal(t, map[string]any{}, got["context"], "the default context is an empty object")

	res = runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--idempotency-key", "k-2")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "existing task t-1 demo/order_fulfillment@1.0.0\n", res.stdout)

	reqs := f.requests()
	require.Len(t, reqs, 3)
	requireProtoEqual(t, &coordinatorv1.CreateTaskRequest{
		Namespace: "demo", Name: "order_fulfillment", Version: "1.0.0",
		Context: mustStruct(t, map[string]any{
			"order_id": "A1", "items": []any{1, 2}, "gift": map[string]any{"wrap": true},
		}),
		IdempotencyKey: "k-1",
		BypassSteps:    []string{"reserve", "ship"},
	}, reqs[0])
	requireProtoEqual(t, &coordinatorv1.CreateTaskRequest{
		Namespace: "demo", Name: "order_fulfillment", Context: mustStruct(t, map[string]any{}),
	}, reqs[1])
}

func TestTaskCreateRejectsBadContextBeforeAnyCall(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{}
	addr := serve(t, f)
	for _, tc := range []struct{ context, want string }{
		{`[1, 2]`, "tasker: --context must be a JSON object, got an array\n"},
		{`"order"`, "tasker: --context must be a JSON object, got a string\n"},
		{`null`, "tasker: --context must be a JSON object, got null\n"},
		{`{"a": 1} {"b": 2}`, "tasker: --context has trailing data after the JSON object\n"},
		{`{order_id: 1}`, "tasker: --context is not valid JSON: "},
	} {
		res := runCLI(t, addr, "task", "create", "demo/x", "--context", tc.context)
		require.Equal(t, 1, res.code, tc.context)
		require.True(t, strings.HasPrefix(res.stderr, tc.want), "context %s: stderr %q", tc.context, res.stderr)
		require.Empty(t, res.stdout)
	}
	require.Empty(t, f.requests())
}

// waitFake serves a create, a watch that replays transitions ending in
// final, and a get returning the task in that state.
func waitFake(t *testing.T, final coordinatorv1.State) *fakeCoordinator {
	task := fixtureTask(t)
	done := proto.Clone(task).(*coordinatorv1.Task)
	done.State = final
	return &fakeCoordinator{
		createTask: func(*coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
			return &coordinatorv1.CreateTaskResponse{Task: task, Created: true}, nil
		},
		watchTask: []*coordinatorv1.WatchTaskResponse{
			{Transition: &coordinatorv1.Transition{Seq: 1, TaskId: "t-1", FromState: coordinatorv1.State_STATE_PENDING, ToState: coordinatorv1.State_STATE_IN_PROGRESS}, TaskState: coordinatorv1.State_STATE_IN_PROGRESS},
			{Transition: &coordinatorv1.Transition{Seq: 2, TaskId: "t-1", FromState: coordinatorv1.State_STATE_IN_PROGRESS, ToState: final}, TaskState: final},
		},
		getTask: func(*coordinatorv1.GetTaskRequest) (*coordinatorv1.GetTaskResponse, error) {
			return &coordinatorv1.GetTaskResponse{Task: done}, nil
		},
	}
}

func TestTaskCreateWait(t *testing.T) {
	t.Parallel()
	f := waitFake(t, coordinatorv1.State_STATE_COMPLETE)
	addr := serve(t, f)
	res := runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--wait", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Empty(t, res.stderr)
	var got taskJSON
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got))
	require.Equal(t, "complete", got.State)

	reqs := f.requests()
	require.Len(t, reqs, 3)
	requireProtoEqual(t, &coordinatorv1.WatchTaskRequest{Id: "t-1"}, reqs[1])
	requireProtoEqual(t, &coordinatorv1.GetTaskRequest{Id: "t-1"}, reqs[2])
}

func TestTaskCreateWaitFailsUnlessComplete(t *testing.T) {
	t.Parallel()
	addr := serve(t, waitFake(t, coordinatorv1.State_STATE_ERROR))
	res := runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--wait")
	require.Equal(t, exitTaskError, res.code)
	require.Equal(t, "tasker: task t-1 ended error, not complete\n", res.stderr)
	require.True(t, strings.HasPrefix(res.stdout, "created task t-1 demo/order_fulfillment@1.0.0\ntask t-1  demo/order_fulfillment@1.0.0  error  "), res.stdout)
}

func TestTaskCreateWaitRewatchesWhenStreamEndsEarly(t *testing.T) {
	t.Parallel()
	task := fixtureTask(t)
	done := proto.Clone(task).(*coordinatorv1.Task)
	done.State = coordinatorv1.State_STATE_COMPLETE
	var gets atomic.Int32
	f := &fakeCoordinator{
		createTask: func(*coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
			return &coordinatorv1.CreateTaskResponse{Task: task, Created: true}, nil
		},
		// The stream ends while the task is still running.
		watchTask: []*coordinatorv1.WatchTaskResponse{
			{Transition: &coordinatorv1.Transition{Seq: 7, TaskId: "t-1", ToState: coordinatorv1.State_STATE_IN_PROGRESS}},
		},
		getTask: func(*coordinatorv1.GetTaskRequest) (*coordinatorv1.GetTaskResponse, error) {
			if gets.Add(1) == 1 {
				return &coordinatorv1.GetTaskResponse{Task: task}, nil
			}
			return &coordinatorv1.GetTaskResponse{Task: done}, nil
		},
	}
	addr := serve(t, f)
	res := runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--wait")
	require.Equal(t, 0, res.code, res.stderr)
	reqs := f.requests()
	require.Len(t, reqs, 5)
	requireProtoEqual(t, &coordinatorv1.WatchTaskRequest{Id: "t-1"}, reqs[1])
	requireProtoEqual(t, &coordinatorv1.WatchTaskRequest{Id: "t-1", AfterSeq: 7}, reqs[3])
}

func TestTaskWatch(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{
		watchTask: []*coordinatorv1.WatchTaskResponse{
			{Transition: &coordinatorv1.Transition{Seq: 1, ToState: coordinatorv1.State_STATE_PENDING, At: ts(t, "2026-01-02T03:04:05.1Z"), Reason: "created"}},
			{Transition: &coordinatorv1.Transition{Seq: 2, StepName: "charge", FromState: coordinatorv1.State_STATE_IN_PROGRESS, ToState: coordinatorv1.State_STATE_ERROR,
				At: ts(t, "2026-01-02T03:04:05.000000002Z"), Attempt: 2, Reason: "card\ndeclined"}},
		},
		watchErr: status.Error(codes.NotFound, `task "t-9" not found`),
	}
	addr := serve(t, f)
	res := runCLI(t, addr, "task", "watch", "t-9")
	require.Equal(t, 1, res.code)
	require.Equal(t, "2026-01-02T03:04:05.1Z  task                  - → pending  attempt 0  created\n"+
		"2026-01-02T03:04:05.000000002Z  charge                in_progress → error  attempt 2  card declined\n", res.stdout)
	require.Equal(t, "tasker: task \"t-9\" not found (NotFound)\n", res.stderr)
}

// pagedTasks serves n tasks named t1..tn through page tokens, at most two
// per page whatever the page size asked for.
func pagedTasks(t *testing.T, n int) func(*coordinatorv1.ListTasksRequest) (*coordinatorv1.ListTasksResponse, error) {
	created := ts(t, "2026-01-02T03:04:05Z")
	return func(r *coordinatorv1.ListTasksRequest) (*coordinatorv1.ListTasksResponse, error) {
		start := 0
		if r.GetPageToken() != "" {
			var err error
			if start, err = strconv.Atoi(r.GetPageToken()); err != nil {
				return nil, status.Error(codes.InvalidArgument, "bad token")
			}
		}
		end := min(start+2, start+int(r.GetPageSize()), n)
		resp := &coordinatorv1.ListTasksResponse{}
		for i := start; i < end; i++ {
			resp.Tasks = append(resp.Tasks, &coordinatorv1.Task{
				Id: fmt.Sprintf("t%d", i+1), Namespace: "demo", Name: "x", Version: "1.0.0",
				State:     coordinatorv1.State_STATE_COMPLETE,
				CreatedAt: created,
				Steps:     []*coordinatorv1.Step{{Name: "a", State: coordinatorv1.State_STATE_COMPLETE}, {Name: "b", State: coordinatorv1.State_STATE_PENDING}},
			})
		}
		if end < n {
			resp.NextPageToken = strconv.Itoa(end)
		}
		return resp, nil
	}
}

func TestTaskListFollowsPagesUpToLimit(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{listTasks: pagedTasks(t, 7)}
	addr := serve(t, f)

	res := runCLI(t, addr, "task", "list", "--limit", "5", "--state", "complete", "--namespace", "demo", "--name", "x", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	require.Len(t, lines, 5)
	for i, line := range lines {
		var got taskJSON
		require.NoError(t, json.Unmarshal([]byte(line), &got))
		require.Equal(t, fmt.Sprintf("t%d", i+1), got.ID)
		require.Equal(t, "complete", got.State)
		require.Len(t, got.Steps, 2)
	}
	want := func(size int32, token string) *coordinatorv1.ListTasksRequest {
		return &coordinatorv1.ListTasksRequest{
			State: coordinatorv1.State_STATE_COMPLETE, Namespace: "demo", Name: "x",
			PageSize: size, PageToken: token, Full: true,
		}
	}
	reqs := f.requests()
	require.Len(t, reqs, 3)
	requireProtoEqual(t, want(5, ""), reqs[0])
	requireProtoEqual(t, want(3, "2"), reqs[1])
	requireProtoEqual(t, want(1, "4"), reqs[2])

	// A limit beyond the data stops at the last page.
	res = runCLI(t, addr, "task", "list", "--limit", "100")
	require.Equal(t, 0, res.code, res.stderr)
	lines = strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	require.Len(t, lines, 8)
	require.Equal(t, []string{"ID", "TEMPLATE", "STATE", "STEPS", "CREATED"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"t1", "demo/x@1.0.0", "complete", "1/2", "2026-01-02T03:04:05Z"}, strings.Fields(lines[1]))
	require.Len(t, f.requests(), 3+4)

	res = runCLI(t, addr, "task", "list", "--state", "finished")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, `tasker: --state: unknown state "finished"`)

	// Context matches go as given, one per flag: a comma stays in its value.
	n := len(f.requests())
	res = runCLI(t, addr, "task", "list", "--limit", "1", "--context-equals", "order_id=A-1,B", "--context-equals", `amount="5"`)
	require.Equal(t, 0, res.code, res.stderr)
	reqs = f.requests()
	require.Len(t, reqs, n+1)
	requireProtoEqual(t, &coordinatorv1.ListTasksRequest{PageSize: 1, Full: true, ContextEquals: []string{"order_id=A-1,B", `amount="5"`}}, reqs[n])
}

func TestTaskGetCancelRetryResolve(t *testing.T) {
	t.Parallel()
	task := fixtureTask(t)
	f := &fakeCoordinator{
		getTask: func(*coordinatorv1.GetTaskRequest) (*coordinatorv1.GetTaskResponse, error) {
			return &coordinatorv1.GetTaskResponse{Task: task}, nil
		},
		cancelTask: func(*coordinatorv1.CancelTaskRequest) (*coordinatorv1.CancelTaskResponse, error) {
			return &coordinatorv1.CancelTaskResponse{Task: task}, nil
		},
		retryTask: func(*coordinatorv1.RetryTaskRequest) (*coordinatorv1.RetryTaskResponse, error) {
			return nil, status.Error(codes.FailedPrecondition, "task t-1 is in_progress, not error")
		},
		resolveStep: func(*coordinatorv1.ResolveStepRequest) (*coordinatorv1.ResolveStepResponse, error) {
			return &coordinatorv1.ResolveStepResponse{Task: task}, nil
		},
	}
	addr := serve(t, f)

	res := runCLI(t, addr, "task", "get", "t-1", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, compactJSON(t, fixtureTaskJSON)+"\n", res.stdout)

	res = runCLI(t, addr, "task", "cancel", "t-1", "--reason", "customer asked")
	require.Equal(t, 0, res.code, res.stderr)
	require.True(t, strings.HasPrefix(res.stdout, "task t-1  "), res.stdout)

	res = runCLI(t, addr, "task", "retry", "t-1")
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: task t-1 is in_progress, not error (FailedPrecondition)\n", res.stderr)

	res = runCLI(t, addr, "step", "resolve", "t-1", "charge", "--reason", "charged by phone", "--results", `{"receipt": "r-9"}`)
	require.Equal(t, 0, res.code, res.stderr)

	res = runCLI(t, addr, "step", "resolve", "t-1", "charge")
	require.Equal(t, 0, res.code, res.stderr)

	res = runCLI(t, addr, "step", "resolve", "t-1", "charge", "--results", `{receipt}`)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "tasker: --results is not valid JSON")

	reqs := f.requests()
	require.Len(t, reqs, 5)
	requireProtoEqual(t, &coordinatorv1.GetTaskRequest{Id: "t-1"}, reqs[0])
	requireProtoEqual(t, &coordinatorv1.CancelTaskRequest{Id: "t-1", Reason: "customer asked"}, reqs[1])
	requireProtoEqual(t, &coordinatorv1.RetryTaskRequest{Id: "t-1"}, reqs[2])
	requireProtoEqual(t, &coordinatorv1.ResolveStepRequest{
		TaskId: "t-1", StepName: "charge", Reason: "charged by phone",
		Results: mustValue(t, map[string]any{"receipt": "r-9"}),
	}, reqs[3])
	requireProtoEqual(t, &coordinatorv1.ResolveStepRequest{TaskId: "t-1", StepName: "charge"}, reqs[4])
}

func TestExecutors(t *testing.T) {
	t.Parallel()
	connectedAt := ts(t, "2026-01-02T03:04:05.5Z")
	f := &fakeCoordinator{listExecutors: func(*coordinatorv1.ListExecutorsRequest) (*coordinatorv1.ListExecutorsResponse, error) {
		return &coordinatorv1.ListExecutorsResponse{Executors: []*coordinatorv1.ExecutorInfo{
			{Id: "ex-1", Address: "127.0.0.1:7071", Handlers: []string{"echo", "sleep"}, Capacity: 8, InFlight: 3,
				Language: "go", Connected: true, ConnectedAt: connectedAt, LastHeard: ts(t, "2026-01-02T03:04:09Z"),
				Coordinators: []string{"127.0.0.1:7070"}},
			{Id: "ex-2", Address: "10.0.0.2:7071", Language: "python"},
		}, Unhosted: []*coordinatorv1.UnhostedHandler{{Handler: "charge_card", Templates: []string{"shop/checkout@1.0.0"}}}}, nil
	}}
	addr := serve(t, f)

	res := runCLI(t, addr, "executors", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t,
		`{"id":"ex-1","address":"127.0.0.1:7071","language":"go","handlers":["echo","sleep"],"capacity":8,"in_flight":3,"connected":true,"connected_at":"2026-01-02T03:04:05.5Z","last_heard":"2026-01-02T03:04:09Z","coordinators":["127.0.0.1:7070"]}`+"\n"+
			`{"id":"ex-2","address":"10.0.0.2:7071","language":"python","handlers":[],"capacity":0,"in_flight":0,"connected":false,"connected_at":null,"last_heard":null,"coordinators":[]}`+"\n",
		res.stdout)
	require.Equal(t, "warning: no connected executor hosts handler \"charge_card\", used by shop/checkout@1.0.0\n", res.stderr)

	res = runCLI(t, addr, "executors")
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	require.Len(t, lines, 3)
	require.Equal(t, []string{"ex-1", "127.0.0.1:7071", "go", "since", "2026-01-02T03:04:05Z", "3/8", "echo,sleep"}, strings.Fields(lines[1]))
}

func TestCoordinatorAddressFromEnv(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{listExecutors: func(*coordinatorv1.ListExecutorsRequest) (*coordinatorv1.ListExecutorsResponse, error) {
		return &coordinatorv1.ListExecutorsResponse{}, nil
	}}
	addr := serve(t, f)

	res := runCLIEnv(t, cliEnvFor(map[string]string{envCoordinator: addr}), "executors")
	require.Equal(t, 0, res.code, res.stderr)
	require.Len(t, f.requests(), 1)

	// The flag wins over the environment: nothing listens on the env
	// address's discard port, so reaching the fake proves the flag was used.
	res = runCLIEnv(t, cliEnvFor(map[string]string{envCoordinator: "127.0.0.1:9"}), "--coordinator", addr, "executors")
	require.Equal(t, 0, res.code, res.stderr)
	require.Len(t, f.requests(), 2)
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"task", "get"}, exitUsage, "tasker: accepts 1 arg(s), received 0\nRun 'tasker task get --help' for usage.\n"},
		{[]string{"task", "list", "--limit", "x"}, exitUsage, "tasker: invalid argument \"x\" for \"--limit\" flag: strconv.ParseInt: parsing \"x\": invalid syntax\nRun 'tasker task list --help' for usage.\n"},
		{[]string{"task", "list", "--limit", "0"}, exitFailed, "tasker: --limit must be positive, got 0\n"},
		{[]string{"task", "get", "t-1", "-o", "yaml"}, exitFailed, "tasker: unknown output format \"yaml\" (want json)\n"},
		{[]string{"task", "create", "demo/x@"}, exitFailed, "tasker: template \"demo/x@\": want NAMESPACE/NAME[@VERSION]\n"},
	} {
		res := runCLI(t, "127.0.0.1:9", tc.args...)
		require.Equal(t, tc.code, res.code, tc.args)
		require.Equal(t, tc.want, res.stderr, tc.args)
	}
}

// bigContext is a JSON object of about n bytes.
func bigContext(t *testing.T, n int) (string, map[string]any) {
	t.Helper()
	obj := map[string]any{"order_id": "A1", "blob": strings.Repeat("x", n)}
	b, err := json.Marshal(obj)
	require.NoError(t, err)
	return string(b), obj
}

// A context over 128 KiB cannot be one command-line argument (Linux's
// MAX_ARG_STRLEN), so it had no way in: --context @FILE and --context -
// read it from a file or stdin.
func TestTaskCreateContextFromFileOrStdin(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{createTask: func(r *coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
		return &coordinatorv1.CreateTaskResponse{Task: &coordinatorv1.Task{Id: "t-1"}, Created: true}, nil
	}}
	addr := serve(t, f)
	raw, obj := bigContext(t, 200<<10)
	path := writeFile(t, "ctx.json", raw)

	res := runCLI(t, addr, "task", "create", "demo/x", "--context", "@"+path)
	require.Equal(t, 0, res.code, res.stderr)
	env := cliEnvFor(nil)
	env.Stdin = strings.NewReader(raw)
	res = runCLIEnv(t, env, "--coordinator", addr, "task", "create", "demo/x", "--context", "-")
	require.Equal(t, 0, res.code, res.stderr)

	reqs := f.requests()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		requireProtoEqual(t, &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "x", Context: mustStruct(t, obj)}, r)
	}

	for _, tc := range []struct{ flag, want string }{
		{"@" + path + ".missing", "tasker: --context @" + path + ".missing: open " + path + ".missing: no such file or directory\n"},
		{"@" + writeFile(t, "list.json", "[1]"), "must be a JSON object, got an array\n"},
		{"@" + writeFile(t, "bad.json", "{order_id: 1}"), "is not valid JSON: "},
	} {
		res := runCLI(t, addr, "task", "create", "demo/x", "--context", tc.flag)
		require.Equal(t, 1, res.code)
		require.Contains(t, res.stderr, "tasker: --context "+tc.flag)
		require.Contains(t, res.stderr, tc.want)
	}
	require.Len(t, f.requests(), 2, "a bad context sends nothing")
}

// Against a real coordinator, a context over its --max-context-bytes and a
// request over its --max-request-bytes are refused with messages that name
// the flag to raise.
func TestOversizedContextNamesTheCoordinatorFlag(t *testing.T) {
	t.Parallel()
	rc, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0",
		store:  storeFlags{db: filepath.Join(t.TempDir(), "tasker.db"), sync: "normal"},
		limits: coordinator.Limits{MaxContextBytes: 16 << 10, MaxRequestBytes: 64 << 10},
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.stop()) })
	tmpl := writeFile(t, "t.yaml", "namespace: demo\nname: big\nversion: 1.0.0\nsteps:\n  - {name: a, handler: noop}\n")
	res := runCLI(t, rc.addr, "template", "apply", tmpl)
	require.Equal(t, 0, res.code, res.stderr)

	raw, _ := bigContext(t, 8<<10)
	res = runCLI(t, rc.addr, "task", "create", "demo/big", "--context", "@"+writeFile(t, "small.json", raw))
	require.Equal(t, 0, res.code, res.stderr)

	raw, _ = bigContext(t, 32<<10)
	res = runCLI(t, rc.addr, "task", "create", "demo/big", "--context", "@"+writeFile(t, "medium.json", raw))
	require.Equal(t, 1, res.code)
	require.Regexp(t, `^tasker: context is \d+ bytes, over the limit of 16384 bytes \(the coordinator's --max-context-bytes flag\) \(ResourceExhausted\)\n$`, res.stderr)

	raw, _ = bigContext(t, 100<<10)
	res = runCLI(t, rc.addr, "task", "create", "demo/big", "--context", "@"+writeFile(t, "large.json", raw))
	require.Equal(t, 1, res.code)
	require.Regexp(t, `^tasker: the request is \d+ bytes, over the coordinator's limit of 65536 bytes \(its --max-request-bytes flag\) \(ResourceExhausted\)\n$`, res.stderr)
}

// A step whose handler no executor hosts used to leave its task
// in_progress silently, and task create --wait --timeout 30s waited on past
// 45 s. Now the create warns, and the wait stops at --timeout with its own
// exit status, naming the task and its state.
func TestTaskThatCannotRunSaysSo(t *testing.T) {
	t.Parallel()
	rc, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0",
		store:  storeFlags{db: filepath.Join(t.TempDir(), "tasker.db"), sync: "normal"},
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.stop()) })
	tmpl := writeFile(t, "t.yaml", "namespace: demo\nname: stuck\nversion: 1.0.0\nsteps:\n  - {name: charge, handler: charge_card}\n")
	res := runCLI(t, rc.addr, "template", "apply", tmpl)
	require.Equal(t, 0, res.code, res.stderr)

	res = runCLI(t, rc.addr, "--timeout", "300ms", "task", "create", "demo/stuck", "--wait", "-o", "json")
	require.Equal(t, exitTimeout, res.code, res.stderr)
	var got taskJSON
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got), res.stdout)
	require.Contains(t, []string{"pending", "in_progress"}, got.State)
	require.Equal(t, "pending", got.Steps[0].State, "nothing could run it")
	require.Equal(t, `warning: no connected executor hosts handler "charge_card" (step "charge"): tasks wait at it until an executor hosting it connects`+"\n"+
		"tasker: task "+got.ID+" is still "+got.State+" after --timeout 300ms\n", res.stderr)
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	got, err := parseSince("90m", now)
	require.NoError(t, err)
	require.Equal(t, now.Add(-90*time.Minute), got)
	got, err = parseSince("2026-11-29T08:00:00Z", now)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC), got)
	_, err = parseSince("-1h", now)
	require.ErrorContains(t, err, "must not be negative")
	_, err = parseSince("yesterday", now)
	require.ErrorContains(t, err, "RFC 3339")
}

func TestTaskCreateDelayed(t *testing.T) {
	t.Parallel()
	fixture := fixtureTask(t)
	f := &fakeCoordinator{createTask: func(r *coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
		task := proto.Clone(fixture).(*coordinatorv1.Task)
		task.RunAt = r.GetRunAt()
		return &coordinatorv1.CreateTaskResponse{Task: task, Created: true}, nil
	}}
	addr := serve(t, f)

	res := runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--delay", "90m", "--priority", "4")
	require.Equal(t, 0, res.code, res.stderr)
	res = runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--run-at", "2026-12-01T08:00:00Z", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got))
	require.Equal(t, "2026-12-01T08:00:00Z", got["run_at"])
	reqs := f.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, 90*time.Minute, reqs[0].(*coordinatorv1.CreateTaskRequest).GetDelay().AsDuration())
	require.EqualValues(t, 4, reqs[0].(*coordinatorv1.CreateTaskRequest).GetPriority())
	require.Nil(t, reqs[0].(*coordinatorv1.CreateTaskRequest).GetRunAt())
	require.Equal(t, time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), reqs[1].(*coordinatorv1.CreateTaskRequest).GetRunAt().AsTime())

	res = runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--delay", "1m", "--run-at", "2026-12-01T08:00:00Z")
	require.Equal(t, exitUsage, res.code)
	require.Contains(t, res.stderr, "--run-at and --delay")
	res = runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--run-at", "tomorrow")
	require.Equal(t, exitFailed, res.code)
	require.Contains(t, res.stderr, "want an RFC 3339 time")
	require.Len(t, f.requests(), 2, "refused commands send nothing")
}

func TestTaskSignal(t *testing.T) {
	t.Parallel()
	task := fixtureTask(t)
	var got []*coordinatorv1.SignalTaskRequest
	var mu sync.Mutex
	f := &fakeCoordinator{
		signalTask: func(r *coordinatorv1.SignalTaskRequest) (*coordinatorv1.SignalTaskResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, r)
			if r.GetSignal() == "rejected" {
				return nil, status.Error(codes.NotFound, `signal "rejected": no step of task t-1 waits for it`)
			}
			return &coordinatorv1.SignalTaskResponse{Task: task, ConsumedBy: "approve"}, nil
		},
	}
	addr := serve(t, f)

	res := runCLI(t, addr, "task", "signal", "t-1", "approved", "--payload", `{"by": "ana"}`, "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, compactJSON(t, fixtureTaskJSON)+"\n", res.stdout)
	require.Equal(t, "signal approved consumed by step approve\n", res.stderr)

	res = runCLI(t, addr, "task", "signal", "t-1", "rejected")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "no step of task t-1 waits for it (NotFound)")

	res = runCLI(t, addr, "task", "signal", "t-1", "approved", "--payload", `{by}`)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "tasker: --payload is not valid JSON")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 2, "a bad payload is refused before any call")
	require.Equal(t, "t-1", got[0].GetId())
	require.JSONEq(t, `{"by": "ana"}`, got[0].GetPayload())
	require.Empty(t, got[1].GetPayload())
}

// task count against a real coordinator: the counts by state and their
// total under the filters task list takes.
func TestTaskCount(t *testing.T) {
	t.Parallel()
	a := startREST(t, coordinatorOptions{})
	a.registerTemplates("")
	addr := a.rc.addr
	// Nothing hosts the blocked template's handler: its tasks stay pending
	// until cancelled.
	first := a.create("", "blocked", map[string]any{"n": 1})
	a.create("", "blocked", map[string]any{"n": 2})
	a.create("", "blocked", map[string]any{"n": 2, "tier": "gold"})
	a.call(http.MethodPost, "/api/v1/tasks/"+first.ID+":cancel", "", map[string]any{"reason": "test"}, nil)

	res := runCLI(t, addr, "task", "count", "--namespace", "rest", "--name", "blocked")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, [][]string{{"STATE", "COUNT"}, {"pending", "2"}, {"cancelled", "1"}, {"total", "3"}}, fields(res.stdout))

	res = runCLI(t, addr, "task", "count", "--namespace", "rest", "--context-equals", "n=2", "--since", "1h", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var got map[string]int64
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got), res.stdout)
	require.Equal(t, map[string]int64{"pending": 2, "total": 2}, got)

	res = runCLI(t, addr, "task", "count", "--context-equals", "n=2", "--context-equals", "tier=gold")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, [][]string{{"STATE", "COUNT"}, {"pending", "1"}, {"total", "1"}}, fields(res.stdout))

	res = runCLI(t, addr, "task", "count", "--search", first.ID, "--until", "1h")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, [][]string{{"STATE", "COUNT"}, {"total", "0"}}, fields(res.stdout), "created more than an hour ago: none")

	res = runCLI(t, addr, "task", "count", "--since", "yesterday")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "--since")
	res = runCLI(t, addr, "task", "count", "--context-equals", "n")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "context_equals[0]")
	require.Contains(t, res.stderr, "InvalidArgument")
}

// fields splits output into lines of whitespace-separated fields.
func fields(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}
