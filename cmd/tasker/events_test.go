package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// eventsFake serves SubscribeEvents: it records the request, sends its
// events, then ends the stream with err, or with hold keeps it open until
// the client goes away, saying so on opened.
type eventsFake struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	events []*coordinatorv1.Event
	err    error
	hold   bool
	opened chan struct{}

	mu   sync.Mutex // guards reqs
	reqs []*coordinatorv1.SubscribeEventsRequest
}

func (f *eventsFake) SubscribeEvents(req *coordinatorv1.SubscribeEventsRequest, stream coordinatorv1.CoordinatorService_SubscribeEventsServer) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, proto.Clone(req).(*coordinatorv1.SubscribeEventsRequest))
	f.mu.Unlock()
	for _, ev := range f.events {
		if err := stream.Send(&coordinatorv1.SubscribeEventsResponse{Event: ev}); err != nil {
			return err
		}
	}
	if f.hold {
		close(f.opened)
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	return f.err
}

func serveEvents(t *testing.T, f *eventsFake) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, f)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; !errors.Is(err, grpc.ErrServerStopped) {
			require.NoError(t, err)
		}
	})
	return lis.Addr().String()
}

func sampleEvents(t *testing.T) []*coordinatorv1.Event {
	return []*coordinatorv1.Event{
		{Cursor: "41", Namespace: "demo", Name: "order", Transition: &coordinatorv1.Transition{
			Seq: 41, TaskId: "t-1", FromState: coordinatorv1.State_STATE_PENDING, ToState: coordinatorv1.State_STATE_IN_PROGRESS,
			At: ts(t, "2026-01-02T03:04:05.1Z"), Reason: "first step dispatched"}},
		{Cursor: "42", Namespace: "demo", Name: "order", Transition: &coordinatorv1.Transition{
			Seq: 42, TaskId: "t-1", StepName: "charge", FromState: coordinatorv1.State_STATE_IN_PROGRESS,
			ToState: coordinatorv1.State_STATE_ERROR, At: ts(t, "2026-01-02T03:04:05.000000002Z"), Attempt: 2, Reason: "card\ndeclined"}},
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	f := &eventsFake{events: sampleEvents(t)}
	addr := serveEvents(t, f)
	res := runCLI(t, addr, "events", "--namespace", "demo", "--template", "order", "--kinds", "task,step", "--after", "40", "--follow")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "41  2026-01-02T03:04:05.1Z  t-1  demo/order  task                  pending → in_progress  first step dispatched\n"+
		"42  2026-01-02T03:04:05.000000002Z  t-1  demo/order  charge                in_progress → error  card declined\n", res.stdout)
	requireProtoEqual(t, &coordinatorv1.SubscribeEventsRequest{Namespace: "demo", Name: "order", After: "40", Follow: true,
		Kinds: []coordinatorv1.EventKind{coordinatorv1.EventKind_EVENT_KIND_TASK, coordinatorv1.EventKind_EVENT_KIND_STEP}}, f.reqs[0])

	res = runCLI(t, addr, "events", "--from-now", "--kinds", "step", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, `{"cursor":"41","at":"2026-01-02T03:04:05.1Z","task_id":"t-1","namespace":"demo","name":"order","kind":"task","step":null,"from":"pending","to":"in_progress","attempt":0,"reason":"first step dispatched","seq":41}`+"\n"+
		`{"cursor":"42","at":"2026-01-02T03:04:05.000000002Z","task_id":"t-1","namespace":"demo","name":"order","kind":"step","step":"charge","from":"in_progress","to":"error","attempt":2,"reason":"card\ndeclined","seq":42}`+"\n", res.stdout)
	requireProtoEqual(t, &coordinatorv1.SubscribeEventsRequest{FromNow: true,
		Kinds: []coordinatorv1.EventKind{coordinatorv1.EventKind_EVENT_KIND_STEP}}, f.reqs[1])
}

func TestEventsRefusals(t *testing.T) {
	t.Parallel()
	f := &eventsFake{err: status.Error(codes.OutOfRange, "cursor 3 is older than the events retained: events up to cursor 90 have been deleted")}
	addr := serveEvents(t, f)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--kinds", "tasks,nodes"}, exitUsage, `--kinds: unknown kind "nodes"`},
		{[]string{"--after", "3", "--from-now"}, exitUsage, "--after and --from-now cannot be combined"},
		{[]string{"-o", "yaml"}, exitUsage, `unknown output format "yaml"`},
		{[]string{"--after", "3"}, exitFailed, "events up to cursor 90 have been deleted"},
	} {
		res := runCLI(t, addr, append([]string{"events"}, tc.args...)...)
		require.Equal(t, tc.code, res.code, "%v: %s", tc.args, res.stderr)
		require.Contains(t, res.stderr, tc.stderr, "%v", tc.args)
	}
	require.Len(t, f.reqs, 1, "only the valid command line reached the coordinator")
}

// TestEventsFollowInterruptedExitsQuietly: Ctrl-C ends a followed stream
// with 130 and nothing on stderr.
func TestEventsFollowInterruptedExitsQuietly(t *testing.T) {
	t.Parallel()
	f := &eventsFake{events: sampleEvents(t)[:1], hold: true, opened: make(chan struct{})}
	addr := serveEvents(t, f)
	ctx, cancel := context.WithCancelCause(t.Context())
	done := make(chan result, 1)
	go func() { done <- runCLICtx(ctx, cliEnvFor(nil), "--coordinator", addr, "events", "--follow") }()
	<-f.opened
	cancel(&signalError{sig: syscall.SIGINT})
	res := <-done
	require.Equal(t, 130, res.code)
	require.Empty(t, res.stderr)
}
