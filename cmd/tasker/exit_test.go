package main

import (
	"context"
	"net"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// A mistyped subcommand used to print the group's help and exit 0, so a
// script went on as if it had run.
func TestMistypedCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"task", "lst"}, `tasker: unknown command "lst" for "tasker task"; did you mean "list"?` + "\nRun 'tasker task --help' for usage.\n"},
		{[]string{"template", "aply", "x.yaml"}, `tasker: unknown command "aply" for "tasker template"; did you mean "apply"?` + "\nRun 'tasker template --help' for usage.\n"},
		{[]string{"step", "reslove", "t-1", "a"}, `tasker: unknown command "reslove" for "tasker step"; did you mean "resolve"?` + "\nRun 'tasker step --help' for usage.\n"},
		{[]string{"tsak", "list"}, `tasker: unknown command "tsak" for "tasker"; did you mean "task"?` + "\nRun 'tasker --help' for usage.\n"},
		{[]string{"task", "frobnicate"}, `tasker: unknown command "frobnicate" for "tasker task"` + "\nRun 'tasker task --help' for usage.\n"},
		{[]string{"task", "list", "--stat", "error"}, "tasker: unknown flag: --stat\nRun 'tasker task list --help' for usage.\n"},
		{[]string{"version", "extra"}, `tasker: unknown command "extra" for "tasker version"` + "\nRun 'tasker version --help' for usage.\n"},
	} {
		res := runCLI(t, "127.0.0.1:9", tc.args...)
		require.Equal(t, exitUsage, res.code, tc.args)
		require.Equal(t, tc.want, res.stderr, tc.args)
		require.Empty(t, res.stdout, tc.args)
	}

	// A group on its own still shows its help and succeeds.
	res := runCLI(t, "127.0.0.1:9", "task")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, "Available Commands:")
}

// Each way a waited-for or watched task can stop has its own exit status,
// the same for task create --wait and task watch.
func TestTaskExitStatusByFinalState(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		state coordinatorv1.State
		code  int
	}{
		{coordinatorv1.State_STATE_COMPLETE, exitOK},
		{coordinatorv1.State_STATE_ERROR, exitTaskError},
		{coordinatorv1.State_STATE_CANCELLED, exitTaskCancelled},
		{coordinatorv1.State_STATE_RESOLVED_MANUALLY, exitTaskResolved},
	} {
		addr := serve(t, waitFake(t, tc.state))
		res := runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--wait")
		require.Equal(t, tc.code, res.code, "create --wait, %s: %s", tc.state, res.stderr)
		res = runCLI(t, addr, "task", "watch", "t-1")
		require.Equal(t, tc.code, res.code, "watch, %s: %s", tc.state, res.stderr)
		require.Equal(t, 2, strings.Count(res.stdout, "\n"), "watch prints both transitions")
		if tc.code != exitOK {
			require.Equal(t, "tasker: task t-1 ended "+strings.ToLower(strings.TrimPrefix(tc.state.String(), "STATE_"))+", not complete\n", res.stderr)
		}
	}
}

// holdFake answers task create and get with an in-progress task and keeps
// every watch open, as for a task that never stops.
func holdFake(t *testing.T) *fakeCoordinator {
	task := fixtureTask(t)
	return &fakeCoordinator{
		createTask: func(*coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
			return &coordinatorv1.CreateTaskResponse{Task: task, Created: true}, nil
		},
		getTask: func(*coordinatorv1.GetTaskRequest) (*coordinatorv1.GetTaskResponse, error) {
			return &coordinatorv1.GetTaskResponse{Task: task}, nil
		},
		watchHold:   true,
		watchOpened: make(chan struct{}, 4),
	}
}

// Ctrl-C used to print "context canceled" and exit 1; a script could not
// tell it from a failure. Now: nothing printed, 128+signal.
func TestInterruptExitsQuietly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cause error
		code  int
	}{
		{"SIGINT", &signalError{sig: syscall.SIGINT}, 130},
		{"SIGTERM", &signalError{sig: syscall.SIGTERM}, 143},
		{"cancelled without a signal", nil, exitInterrupted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := holdFake(t)
			addr := serve(t, f)
			ctx, cancel := context.WithCancelCause(t.Context())
			done := make(chan result, 1)
			go func() {
				done <- runCLICtx(ctx, cliEnvFor(nil), "--coordinator", addr, "task", "create", "demo/order_fulfillment", "--wait")
			}()
			<-f.watchOpened
			cancel(tc.cause)
			res := <-done
			require.Equal(t, tc.code, res.code)
			require.Empty(t, res.stderr)
			require.Equal(t, "created task t-1 demo/order_fulfillment@1.0.0\n", res.stdout)
		})
	}
}

// task create --wait --timeout 30s used to wait on past 45 s: the timeout
// bounded each call, not the wait.
func TestWaitHonoursTimeout(t *testing.T) {
	t.Parallel()
	f := holdFake(t)
	addr := serve(t, f)

	res := runCLI(t, addr, "task", "create", "demo/order_fulfillment", "--wait", "--timeout", "200ms", "-o", "json")
	require.Equal(t, exitTimeout, res.code, res.stderr)
	require.Equal(t, "tasker: task t-1 is still in_progress after --timeout 200ms\n", res.stderr)
	require.Equal(t, compactJSON(t, fixtureTaskJSON)+"\n", res.stdout, "the task is printed as it stands")

	res = runCLI(t, addr, "task", "watch", "t-1", "--timeout", "200ms")
	require.Equal(t, exitTimeout, res.code, res.stderr)
	require.Equal(t, "tasker: task t-1 is still in_progress after --timeout 200ms\n", res.stderr)
}

func TestVersion(t *testing.T) {
	t.Parallel()
	res := runCLI(t, "127.0.0.1:9", "version")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.True(t, strings.HasPrefix(res.stdout, "tasker "), res.stdout)
	require.Contains(t, res.stdout, "module:   github.com/tasker-go/tasker\n")

	res = runCLI(t, "127.0.0.1:9", "--version")
	require.Equal(t, exitOK, res.code, res.stderr)
	require.True(t, strings.HasPrefix(res.stdout, "tasker "), res.stdout)
	require.Equal(t, 1, strings.Count(res.stdout, "\n"))
}

func TestBuildVersion(t *testing.T) {
	t.Parallel()
	const rev = "2d18f28c0ffee0123456789abcdef0123456789a"
	for _, tc := range []struct {
		name        string
		info        *debug.BuildInfo
		short, full string
	}{
		{"no build info", nil, "(devel)", "tasker (devel)\nmodule:   github.com/tasker-go/tasker\n"},
		{
			"go install of a release",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/tasker-go/tasker", Version: "v1.2.3"}},
			"v1.2.3",
			"tasker v1.2.3\nmodule:   github.com/tasker-go/tasker\ngo:       go1.26.8\n",
		},
		{
			"build in a modified checkout",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/tasker-go/tasker", Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-11-30T21:08:56Z"}, {Key: "vcs.modified", Value: "true"},
			}},
			"(devel) 2d18f28c0ffe+dirty",
			"tasker (devel)\nmodule:   github.com/tasker-go/tasker\nrevision: " + rev + " (modified)\ntime:     2026-11-30T21:08:56Z\ngo:       go1.26.8\n",
		},
		{
			"version stamped from VCS already names the revision",
			&debug.BuildInfo{Main: debug.Module{Path: "github.com/tasker-go/tasker", Version: "v0.0.0-20261130210856-2d18f28c0ffe"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: rev},
			}},
			"v0.0.0-20261130210856-2d18f28c0ffe",
			"tasker v0.0.0-20261130210856-2d18f28c0ffe\nmodule:   github.com/tasker-go/tasker\nrevision: " + rev + "\n",
		},
	} {
		v := buildVersion(tc.info)
		require.Equal(t, tc.short, v.short(), tc.name)
		require.Equal(t, tc.full, v.String(), tc.name)
	}
}

func TestCoordinatorTarget(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"localhost":              "localhost:7070",
		"localhost:":             "localhost:7070",
		"localhost:7171":         "localhost:7171",
		"10.0.0.5":               "10.0.0.5:7070",
		"::1":                    "[::1]:7070",
		"[::1]":                  "[::1]:7070",
		"[::1]:7171":             "[::1]:7171",
		"coord.example.com":      "coord.example.com:7070",
		"dns:///coord:7070":      "dns:///coord:7070",
		"unix:/run/tasker.sock":  "unix:/run/tasker.sock",
		"unix:///run/tasker.sok": "unix:///run/tasker.sok",
		"":                       "",
	} {
		require.Equal(t, want, coordinatorTarget(in), in)
	}
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// The raw dial error gave no hint of what to do; the message now names the
// address, the reason and both ways to point the CLI elsewhere.
func TestUnreachableCoordinator(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	res := runCLI(t, addr, "executors")
	require.Equal(t, exitFailed, res.code)
	require.Equal(t, "tasker: cannot reach coordinator at "+addr+" (connection refused): "+
		"is `tasker coordinator` or `tasker dev` running? set --coordinator or TASKER_COORDINATOR\n", res.stderr)

	// Without a port the default one is used, and an unknown host is named.
	res = runCLI(t, "nohost.invalid", "--timeout", "10s", "task", "get", "t-1")
	require.Equal(t, exitFailed, res.code)
	require.Equal(t, "tasker: cannot reach coordinator at nohost.invalid:7070 (unknown host \"nohost.invalid\"): "+
		"is `tasker coordinator` or `tasker dev` running? set --coordinator or TASKER_COORDINATOR\n", res.stderr)
}

func TestUnreachableReason(t *testing.T) {
	t.Parallel()
	const target = "coord:7070"
	for _, tc := range []struct {
		name   string
		st     *status.Status
		state  connectivity.State
		reason string
		ok     bool
	}{
		{"refused", status.New(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.1:7070: connect: connection refused"`), connectivity.TransientFailure, "connection refused", true},
		{"no addresses", status.New(codes.Unavailable, "name resolver error: produced zero addresses"), connectivity.TransientFailure, `unknown host "coord"`, true},
		{"other dial failure", status.New(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.1:7070: connect: no route to host"`), connectivity.TransientFailure, "dial tcp 10.0.0.1:7070: connect: no route to host", true},
		{"TLS", status.New(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`), connectivity.TransientFailure, "TLS handshake failed: tls: first record does not look like a TLS handshake", true},
		{"deadline while connecting", status.New(codes.DeadlineExceeded, "context deadline exceeded"), connectivity.Connecting, "no connection within --timeout", true},
		{"deadline on a live connection", status.New(codes.DeadlineExceeded, "context deadline exceeded"), connectivity.Ready, "", false},
		{"coordinator shutting down", status.New(codes.Unavailable, "coordinator is shutting down"), connectivity.Ready, "", false},
		{"refusal from the coordinator", status.New(codes.NotFound, "task t-1 not found"), connectivity.Ready, "", false},
	} {
		reason, ok := unreachableReason(target, tc.st, tc.state)
		require.Equal(t, tc.ok, ok, tc.name)
		require.Equal(t, tc.reason, reason, tc.name)
	}
}

func TestExplainLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		st   *status.Status
		want string
	}{
		{status.New(codes.ResourceExhausted, "grpc: received message larger than max (9437201 vs. 8388608)"),
			"the request is 9437201 bytes, over the coordinator's limit of 8388608 bytes (its --max-request-bytes flag)"},
		{status.New(codes.ResourceExhausted, "context is 2000000 bytes, over the limit of 1048576 bytes (max_context_bytes)"),
			"context is 2000000 bytes, over the limit of 1048576 bytes (the coordinator's --max-context-bytes flag)"},
		{status.New(codes.InvalidArgument, "context.order_id: required (max_context_bytes)"), "context.order_id: required (max_context_bytes)"},
	} {
		require.Equal(t, tc.want, explainLimit(tc.st))
	}
}
