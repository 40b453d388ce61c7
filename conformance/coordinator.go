package conformance

import (
	"context"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// coordinatorStub serves the two coordinator RPCs an executor calls, for an
// executor started with the kit as its coordinator: RegisterExecutor is
// answered with the kit's coordinator id (so the executor stops registering
// while a kit stream is open) and ReportStepResult is recorded, so the
// redelivery and shutdown cases accept results that travel that way.
type coordinatorStub struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	id  string
	srv *grpc.Server

	// mu guards the fields below.
	mu            sync.Mutex
	registrations []string
	reports       []reported
	// changed is closed and replaced whenever reports grows.
	changed chan struct{}
}

// reported is one ReportStepResult call.
type reported struct {
	at  time.Time
	res *executorv1.StepResult
}

func startCoordinatorStub(lis net.Listener, id string, opts ...grpc.ServerOption) *coordinatorStub {
	c := &coordinatorStub{id: id, srv: grpc.NewServer(opts...), changed: make(chan struct{})}
	coordinatorv1.RegisterCoordinatorServiceServer(c.srv, c)
	go func() { _ = c.srv.Serve(lis) }()
	return c
}

// stop ends the server without waiting for callers that hang on.
func (c *coordinatorStub) stop() { c.srv.Stop() }

// RegisterExecutor records where the executor listens; the kit already
// dials it, so nothing more happens.
func (c *coordinatorStub) RegisterExecutor(_ context.Context, req *coordinatorv1.RegisterExecutorRequest) (*coordinatorv1.RegisterExecutorResponse, error) {
	if req.GetAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "address is empty")
	}
	c.mu.Lock()
	c.registrations = append(c.registrations, req.GetAddress())
	c.mu.Unlock()
	return &coordinatorv1.RegisterExecutorResponse{
		CoordinatorId: c.id,
		Executor:      &coordinatorv1.ExecutorInfo{Address: req.GetAddress()},
	}, nil
}

// ReportStepResult records the result. It answers applied for the first
// report of an attempt, like a coordinator still waiting for it.
func (c *coordinatorStub) ReportStepResult(_ context.Context, req *coordinatorv1.ReportStepResultRequest) (*coordinatorv1.ReportStepResultResponse, error) {
	res := req.GetResult()
	if res.GetStepId() == "" {
		return nil, status.Error(codes.InvalidArgument, "result.step_id is empty")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	applied := true
	for _, r := range c.reports {
		if r.res.GetStepId() == res.GetStepId() && r.res.GetAttempt() == res.GetAttempt() {
			applied = false
		}
	}
	c.reports = append(c.reports, reported{at: time.Now(), res: res})
	close(c.changed)
	c.changed = make(chan struct{})
	return &coordinatorv1.ReportStepResultResponse{Applied: applied}, nil
}

// reportsFor returns the reported results for step's attempt.
func (c *coordinatorStub) reportsFor(step *executorv1.ExecuteStep) []*executorv1.StepResult {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*executorv1.StepResult
	for _, r := range c.reports {
		if r.res.GetStepId() == step.GetStepId() && r.res.GetAttempt() == step.GetAttempt() {
			out = append(out, r.res)
		}
	}
	return out
}

// watch returns a channel closed at the next report; nil (never ready) for
// a kit without a stub.
func (c *coordinatorStub) watch() <-chan struct{} {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}
