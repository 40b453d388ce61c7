package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// The floor under every hop between coordinator and executor on this
// machine: one gRPC round trip over loopback TCP with nothing behind it,
// on a bidirectional stream (an ExecuteStep out, its result back, as
// coordinator and executor exchange them) and as a unary call (as
// CreateTask is made). With BenchmarkDurable* it gives the floor under one
// task at a time: for linear4, four durable commits and four stream round
// trips between CreateTask's arrival and the last step's result, and the
// CreateTask call itself.
//
//	go test ./bench -run '^$' -bench 'RoundTrip' -benchtime 5000x

// echoService answers every message it receives with the same message.
var echoService = grpc.ServiceDesc{
	ServiceName: "tasker.bench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			m := new(executorv1.ExecuteRequest)
			if err := dec(m); err != nil {
				return nil, err
			}
			return m, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			for {
				m := new(executorv1.ExecuteRequest)
				if err := stream.RecvMsg(m); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := stream.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

// echoConn serves echoService on a loopback port and dials it.
func echoConn(b *testing.B) *grpc.ClientConn {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	srv := grpc.NewServer()
	srv.RegisterService(&echoService, nil)
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(b, err)
	b.Cleanup(func() { _ = conn.Close() })
	return conn
}

// sampleStep is an ExecuteStep the size of a linear4 step's.
func sampleStep() *executorv1.ExecuteRequest {
	return &executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_ExecuteStep{ExecuteStep: &executorv1.ExecuteStep{
		TaskId: "019ad8a0-7c1e-7b3a-9f2d-5e6f7a8b9c0d", StepId: "019ad8a0-7c1e-7b3a-9f2d-5e6f7a8b9c0e",
		StepName: "process_data", Handler: "noop", Attempt: 1, Context: []byte(`{"order_id":42}`),
		ParentResults: map[string][]byte{"validate_input": []byte(`{"ok":true}`)},
	}}}
}

func BenchmarkRoundTripStream(b *testing.B) {
	conn := echoConn(b)
	stream, err := conn.NewStream(b.Context(), &echoService.Streams[0], "/tasker.bench.Echo/Stream")
	require.NoError(b, err)
	msg, got := sampleStep(), new(executorv1.ExecuteRequest)
	for b.Loop() {
		if err := stream.SendMsg(msg); err != nil {
			b.Fatal(err)
		}
		if err := stream.RecvMsg(got); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, stream.CloseSend())
}

func BenchmarkRoundTripUnary(b *testing.B) {
	conn := echoConn(b)
	msg, got := sampleStep(), new(executorv1.ExecuteRequest)
	for b.Loop() {
		if err := conn.Invoke(b.Context(), "/tasker.bench.Echo/Unary", msg, got); err != nil {
			b.Fatal(err)
		}
	}
}
