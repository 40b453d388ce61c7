package coordinator_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// fakeExecutor speaks the executor protocol from the test: it hands every
// ExecuteStep to the test and sends whatever the test says, as a buggy or
// hostile executor might.
type fakeExecutor struct {
	executorv1.UnimplementedExecutorServiceServer
	t        testing.TB
	id       string
	capacity int32
	handlers []string
	// maxReceive is declared in Describe and enforced by the fake's server
	// (0: gRPC's default, declared as 0).
	maxReceive int
	addr       string
	steps      chan *executorv1.ExecuteStep

	mu     sync.Mutex // protects stream, done
	stream grpc.BidiStreamingServer[executorv1.ExecuteRequest, executorv1.ExecuteResponse]
	done   chan struct{} // closed to end the current stream
}

func startFakeExecutor(t testing.TB, id string, capacity int32, handlers ...string) *fakeExecutor {
	t.Helper()
	return startLimitedFakeExecutor(t, id, capacity, 0, handlers...)
}

// startLimitedFakeExecutor starts a fake that accepts messages of at most
// maxReceive bytes, and says so in Describe.
func startLimitedFakeExecutor(t testing.TB, id string, capacity int32, maxReceive int, handlers ...string) *fakeExecutor {
	t.Helper()
	f := &fakeExecutor{t: t, id: id, capacity: capacity, handlers: handlers, maxReceive: maxReceive, steps: make(chan *executorv1.ExecuteStep, 64)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var opts []grpc.ServerOption
	if maxReceive > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(maxReceive))
	}
	srv := grpc.NewServer(opts...)
	executorv1.RegisterExecutorServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	f.addr = lis.Addr().String()
	return f
}

func (f *fakeExecutor) Describe(context.Context, *executorv1.DescribeRequest) (*executorv1.DescribeResponse, error) {
	return &executorv1.DescribeResponse{ExecutorId: f.id, Handlers: f.handlers, Capacity: f.capacity, Language: "test", MaxReceiveBytes: int64(f.maxReceive)}, nil
}

func (f *fakeExecutor) Execute(stream grpc.BidiStreamingServer[executorv1.ExecuteRequest, executorv1.ExecuteResponse]) error {
	done := make(chan struct{})
	f.mu.Lock()
	f.stream, f.done = stream, done
	f.mu.Unlock()
	recv := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recv <- err
				return
			}
			if st := req.GetExecuteStep(); st != nil {
				f.steps <- st
			}
		}
	}()
	select {
	case err := <-recv:
		return err
	case <-done:
		return nil
	}
}

// register asks the coordinator to dial the fake and waits until its
// stream is open; send then writes on that stream.
func (f *fakeExecutor) register(h *harness) {
	f.t.Helper()
	f.mu.Lock()
	before := f.stream
	f.mu.Unlock()
	_, err := h.client.RegisterExecutor(h.ctx, &coordinatorv1.RegisterExecutorRequest{Address: f.addr})
	require.NoError(f.t, err)
	require.Eventually(f.t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.stream != nil && f.stream != before
	}, 10*time.Second, time.Millisecond)
}

// breakStream ends the current stream, as a network cut would.
func (f *fakeExecutor) breakStream() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done != nil {
		close(f.done)
		f.done, f.stream = nil, nil
	}
}

func (f *fakeExecutor) send(msg *executorv1.ExecuteResponse) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotNil(f.t, f.stream, "no stream open")
	require.NoError(f.t, f.stream.Send(msg))
}

// next waits for the next step the coordinator sends.
func (f *fakeExecutor) next() *executorv1.ExecuteStep {
	f.t.Helper()
	select {
	case st := <-f.steps:
		return st
	case <-time.After(10 * time.Second):
		f.t.Fatalf("executor %s received no step", f.id)
		return nil
	}
}

// succeed answers st with a success that claims to come from executorID.
func succeed(st *executorv1.ExecuteStep, executorID string) *executorv1.ExecuteResponse {
	return &executorv1.ExecuteResponse{Kind: &executorv1.ExecuteResponse_StepResult{StepResult: &executorv1.StepResult{
		TaskId: st.GetTaskId(), StepId: st.GetStepId(), Attempt: st.GetAttempt(), ExecutorId: executorID,
		Outcome: &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{Results: []byte(`{}`)}},
	}}}
}

func heartbeat(running ...*executorv1.ExecuteStep) *executorv1.ExecuteResponse {
	hb := &executorv1.Heartbeat{}
	for _, st := range running {
		hb.Running = append(hb.Running, &executorv1.RunningStep{TaskId: st.GetTaskId(), StepId: st.GetStepId(), Attempt: st.GetAttempt()})
	}
	return &executorv1.ExecuteResponse{Kind: &executorv1.ExecuteResponse_Heartbeat{Heartbeat: hb}}
}
