package bench

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// scriptedEvents is a coordinator whose SubscribeEvents sends the header,
// then the messages it is fed, and ends with the error it is fed.
type scriptedEvents struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	reqs chan *coordinatorv1.SubscribeEventsRequest
	msgs chan *coordinatorv1.SubscribeEventsResponse
	end  chan error
}

func (s *scriptedEvents) SubscribeEvents(req *coordinatorv1.SubscribeEventsRequest, stream grpc.ServerStreamingServer[coordinatorv1.SubscribeEventsResponse]) error {
	s.reqs <- req
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		select {
		case m := <-s.msgs:
			if err := stream.Send(m); err != nil {
				return err
			}
		case err := <-s.end:
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// eventsTarget serves a scriptedEvents and returns a target dialled to it.
func eventsTarget(t *testing.T) (*scriptedEvents, *target) {
	t.Helper()
	s := &scriptedEvents{
		reqs: make(chan *coordinatorv1.SubscribeEventsRequest, 1),
		msgs: make(chan *coordinatorv1.SubscribeEventsResponse), end: make(chan error, 1),
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, s)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, conn.Close())
		srv.Stop()
		require.NoError(t, <-served)
	})
	return s, &target{Target: Target{Addr: lis.Addr().String()}, clients: []coordinatorv1.CoordinatorServiceClient{coordinatorv1.NewCoordinatorServiceClient(conn)}}
}

func taskEvent(id, step string, to coordinatorv1.State, at time.Time) *coordinatorv1.SubscribeEventsResponse {
	return &coordinatorv1.SubscribeEventsResponse{Event: &coordinatorv1.Event{
		Transition: &coordinatorv1.Transition{TaskId: id, StepName: step, ToState: to, At: timestamppb.New(at)},
	}}
}

func TestCompletionsHandEachTaskItsEnd(t *testing.T) {
	t.Parallel()
	a, ta := eventsTarget(t)
	b, tb := eventsTarget(t)
	ends, err := followCompletions(t.Context(), []*target{ta, tb}, "bench", "bench_linear4")
	require.NoError(t, err)
	defer ends.stop()
	req := <-a.reqs
	require.Equal(t, "bench", req.GetNamespace())
	require.Equal(t, "bench_linear4", req.GetName())
	require.Equal(t, []coordinatorv1.EventKind{coordinatorv1.EventKind_EVENT_KIND_TASK}, req.GetKinds())
	require.True(t, req.GetFromNow() && req.GetFollow(), "from now on, and kept open")
	<-b.reqs

	complete, failed := coordinatorv1.State_STATE_COMPLETE, coordinatorv1.State_STATE_ERROR
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	// t1 ends before anyone waits for it (its event overtook CreateTask's
	// answer); a step's end and a task still running are not task ends.
	a.msgs <- taskEvent("t1", "", complete, t0)
	a.msgs <- taskEvent("t2", "a", complete, t0)
	a.msgs <- taskEvent("t2", "", coordinatorv1.State_STATE_IN_PROGRESS, t0)
	end, err := ends.await(t.Context(), "t1")
	require.NoError(t, err)
	require.Equal(t, completion{state: complete, at: t0}, end)

	// t2's end comes while its worker waits, from the second coordinator,
	// and the first one's copy of it is dropped.
	got := make(chan completion, 1)
	go func() {
		end, err := ends.await(t.Context(), "t2")
		if err == nil {
			got <- end
		}
		close(got)
	}()
	b.msgs <- taskEvent("t2", "", failed, t0.Add(time.Millisecond))
	require.Equal(t, completion{state: failed, at: t0.Add(time.Millisecond)}, <-got)
	a.msgs <- taskEvent("t2", "", failed, t0.Add(time.Millisecond))
	a.msgs <- taskEvent("t3", "", complete, t0) // a barrier: t2's copy was read before it
	_, err = ends.await(t.Context(), "t3")
	require.NoError(t, err)
	ends.mu.Lock()
	require.Empty(t, ends.early, "a task's end read twice is kept once")
	ends.mu.Unlock()

	// A stream that breaks fails whoever waits, now or later.
	b.end <- status.Error(codes.Unavailable, "coordinator is shutting down")
	_, err = ends.await(t.Context(), "t4")
	require.ErrorContains(t, err, "coordinator is shutting down")
	require.ErrorContains(t, err, "events of "+tb.Addr)
}
