package bench

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// scriptedWatch is a coordinator whose WatchTask sends the given messages
// and ends, to show how watch reads streams a real coordinator sends only
// under races.
type scriptedWatch struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	msgs []*coordinatorv1.WatchTaskResponse
}

func (s *scriptedWatch) WatchTask(_ *coordinatorv1.WatchTaskRequest, stream grpc.ServerStreamingServer[coordinatorv1.WatchTaskResponse]) error {
	for _, m := range s.msgs {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func watchClient(t *testing.T, msgs ...*coordinatorv1.WatchTaskResponse) coordinatorv1.CoordinatorServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, &scriptedWatch{msgs: msgs})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, conn.Close())
		srv.Stop()
		require.NoError(t, <-served)
	})
	return coordinatorv1.NewCoordinatorServiceClient(conn)
}

func transition(seq int64, step string, to coordinatorv1.State) *coordinatorv1.Transition {
	return &coordinatorv1.Transition{Seq: seq, TaskId: "t1", StepName: step, ToState: to}
}

func TestWatchEndsOnTerminalState(t *testing.T) {
	t.Parallel()
	running, complete := coordinatorv1.State_STATE_IN_PROGRESS, coordinatorv1.State_STATE_COMPLETE
	cases := []struct {
		name      string
		msgs      []*coordinatorv1.WatchTaskResponse
		want      coordinatorv1.State
		wantStale int64
		wantErr   string
	}{
		{
			name: "task_state says so",
			msgs: []*coordinatorv1.WatchTaskResponse{
				{Transition: transition(5, "a", complete), TaskState: running},
				{Transition: transition(6, "", complete), TaskState: complete},
			},
			want: complete,
		},
		{
			// A coordinator that read the task's state before its
			// transitions sends the final ones with the older state.
			name: "only the task's own transition says so",
			msgs: []*coordinatorv1.WatchTaskResponse{
				{Transition: transition(5, "a", complete), TaskState: running},
				{Transition: transition(6, "", coordinatorv1.State_STATE_ERROR), TaskState: running},
			},
			want: coordinatorv1.State_STATE_ERROR, wantStale: 1,
		},
		{
			name:    "a step's terminal state is not the task's",
			msgs:    []*coordinatorv1.WatchTaskResponse{{Transition: transition(5, "a", complete), TaskState: running}},
			wantErr: "stream ended before the task did",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &runner{}
			got, err := r.watch(t.Context(), watchClient(t, tc.msgs...), "t1", 4)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.wantStale, r.staleWatchStates.Load())
		})
	}
}
