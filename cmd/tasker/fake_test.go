package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeCoordinator is a CoordinatorService whose answers each test sets
// before serving, and which records every request it receives.
type fakeCoordinator struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer

	registerTemplate func(*coordinatorv1.RegisterTemplateRequest) (*coordinatorv1.RegisterTemplateResponse, error)
	getTemplate      func(*coordinatorv1.GetTemplateRequest) (*coordinatorv1.GetTemplateResponse, error)
	listTemplates    func(*coordinatorv1.ListTemplatesRequest) (*coordinatorv1.ListTemplatesResponse, error)
	createTask       func(*coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error)
	getTask          func(*coordinatorv1.GetTaskRequest) (*coordinatorv1.GetTaskResponse, error)
	listTasks        func(*coordinatorv1.ListTasksRequest) (*coordinatorv1.ListTasksResponse, error)
	cancelTask       func(*coordinatorv1.CancelTaskRequest) (*coordinatorv1.CancelTaskResponse, error)
	signalTask       func(*coordinatorv1.SignalTaskRequest) (*coordinatorv1.SignalTaskResponse, error)
	retryTask        func(*coordinatorv1.RetryTaskRequest) (*coordinatorv1.RetryTaskResponse, error)
	watchTask        []*coordinatorv1.WatchTaskResponse
	watchErr         error
	// watchHold keeps each WatchTask stream open after the replay until the
	// client goes away, as for a task that never stops; watchOpened, when
	// set, receives a value once the replay is sent.
	watchHold     bool
	watchOpened   chan struct{}
	resolveStep   func(*coordinatorv1.ResolveStepRequest) (*coordinatorv1.ResolveStepResponse, error)
	listExecutors func(*coordinatorv1.ListExecutorsRequest) (*coordinatorv1.ListExecutorsResponse, error)

	mu   sync.Mutex      // guards reqs
	reqs []proto.Message // every request received, in order
}

func (f *fakeCoordinator) record(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, proto.Clone(m))
}

// requests returns the requests received so far.
func (f *fakeCoordinator) requests() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.Message(nil), f.reqs...)
}

func (f *fakeCoordinator) RegisterTemplate(_ context.Context, r *coordinatorv1.RegisterTemplateRequest) (*coordinatorv1.RegisterTemplateResponse, error) {
	f.record(r)
	return f.registerTemplate(r)
}

func (f *fakeCoordinator) GetTemplate(_ context.Context, r *coordinatorv1.GetTemplateRequest) (*coordinatorv1.GetTemplateResponse, error) {
	f.record(r)
	return f.getTemplate(r)
}

func (f *fakeCoordinator) ListTemplates(_ context.Context, r *coordinatorv1.ListTemplatesRequest) (*coordinatorv1.ListTemplatesResponse, error) {
	f.record(r)
	return f.listTemplates(r)
}

func (f *fakeCoordinator) CreateTask(_ context.Context, r *coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
	f.record(r)
	return f.createTask(r)
}

func (f *fakeCoordinator) GetTask(_ context.Context, r *coordinatorv1.GetTaskRequest) (*coordinatorv1.GetTaskResponse, error) {
	f.record(r)
	return f.getTask(r)
}

func (f *fakeCoordinator) ListTasks(_ context.Context, r *coordinatorv1.ListTasksRequest) (*coordinatorv1.ListTasksResponse, error) {
	f.record(r)
	return f.listTasks(r)
}

func (f *fakeCoordinator) SignalTask(_ context.Context, r *coordinatorv1.SignalTaskRequest) (*coordinatorv1.SignalTaskResponse, error) {
	f.record(r)
	return f.signalTask(r)
}

func (f *fakeCoordinator) CancelTask(_ context.Context, r *coordinatorv1.CancelTaskRequest) (*coordinatorv1.CancelTaskResponse, error) {
	f.record(r)
	return f.cancelTask(r)
}

func (f *fakeCoordinator) RetryTask(_ context.Context, r *coordinatorv1.RetryTaskRequest) (*coordinatorv1.RetryTaskResponse, error) {
	f.record(r)
	return f.retryTask(r)
}

func (f *fakeCoordinator) WatchTask(r *coordinatorv1.WatchTaskRequest, stream grpc.ServerStreamingServer[coordinatorv1.WatchTaskResponse]) error {
	f.record(r)
	for _, m := range f.watchTask {
		if m.GetTransition().GetSeq() <= r.GetAfterSeq() {
			continue
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	if f.watchOpened != nil {
		f.watchOpened <- struct{}{}
	}
	if f.watchHold {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	return f.watchErr
}

func (f *fakeCoordinator) ResolveStep(_ context.Context, r *coordinatorv1.ResolveStepRequest) (*coordinatorv1.ResolveStepResponse, error) {
	f.record(r)
	return f.resolveStep(r)
}

func (f *fakeCoordinator) ListExecutors(_ context.Context, r *coordinatorv1.ListExecutorsRequest) (*coordinatorv1.ListExecutorsResponse, error) {
	f.record(r)
	return f.listExecutors(r)
}

// serve starts f on a fresh 127.0.0.1 port and returns its address.
func serve(t *testing.T, f *fakeCoordinator) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, f)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		// Serve reports ErrServerStopped when Stop wins the race with its
		// start, which a test that never dials can cause.
		if err := <-done; !errors.Is(err, grpc.ErrServerStopped) {
			require.NoError(t, err)
		}
	})
	return lis.Addr().String()
}

// result is what one CLI invocation produced.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI in-process against addr with no environment.
func runCLI(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return runCLIEnv(t, cliEnvFor(nil), append([]string{"--coordinator", addr}, args...)...)
}

func cliEnvFor(vars map[string]string) cliEnv {
	return cliEnv{Stdin: strings.NewReader(""), Getenv: func(k string) string { return vars[k] }}
}

func runCLIEnv(t *testing.T, env cliEnv, args ...string) result {
	t.Helper()
	return runCLICtx(t.Context(), env, args...)
}

// runCLICtx runs the CLI in-process under ctx, which stands for the
// process's signal context.
func runCLICtx(ctx context.Context, env cliEnv, args ...string) result {
	var stdout, stderr bytes.Buffer
	env.Stdout, env.Stderr = &stdout, &stderr
	code := run(ctx, args, env)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// requireProtoEqual fails with both messages in text form when they differ.
func requireProtoEqual(t *testing.T, want, got proto.Message) {
	t.Helper()
	require.Truef(t, proto.Equal(want, got), "protos differ\nwant: %s\ngot:  %s", prototext.Format(want), prototext.Format(got))
}
