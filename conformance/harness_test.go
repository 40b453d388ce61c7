package conformance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tasker-go/tasker/executor"
	sdkconformance "github.com/tasker-go/tasker/executor/conformance"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Fast timings for executors under test: the kit is told the same
// heartbeat interval, so the heartbeat case takes well under a second.
// Each wait for a message gets the kit's default bound: 3 s was too little
// under the race detector on a loaded machine for large-messages, whose
// 4 MiB messages are copied, encoded and checked through instrumented code.
const (
	testHeartbeat   = 250 * time.Millisecond
	testCaseTimeout = 10 * time.Second
)

func testLogger() *slog.Logger {
	if os.Getenv("TASKER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// sdkExecutor is a Go SDK executor with the conformance handlers, serving
// on a real 127.0.0.1 socket until the test ends or shutdown is called.
type sdkExecutor struct {
	addr string
	// shutdown begins a graceful shutdown, as SIGTERM does to `tasker
	// executor`, and returns at once.
	shutdown func(context.Context) error
}

func startSDK(t *testing.T, cfg executor.Config) *sdkExecutor {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = testHeartbeat
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 4
	}
	// A handler left running by a broken executor's case must not hold up
	// the test's end.
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Second
	}
	if cfg.DeliveryTimeout == 0 {
		cfg.DeliveryTimeout = time.Second
	}
	e, err := executor.New(cfg)
	require.NoError(t, err)
	require.NoError(t, sdkconformance.Register(e))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return &sdkExecutor{addr: lis.Addr().String(), shutdown: func(context.Context) error { cancel(); return nil }}
}

// fault is one deliberate protocol mistake the proxy makes.
type fault struct {
	// describe rewrites Describe's answer.
	describe func(*executorv1.DescribeResponse)
	// down rewrites or drops (nil) a request on its way to the executor.
	down func(*executorv1.ExecuteRequest) *executorv1.ExecuteRequest
	// up rewrites or drops (nil) a message on its way to the kit; it may
	// return several.
	up func(p *proxyStream, msg *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse
	// stop, when set, replaces the graceful shutdown: the proxy is killed.
	hardStop bool
}

// proxy is a broken executor: it forwards the protocol between the kit and
// a correct Go SDK executor, making one mistake on the way.
type proxy struct {
	executorv1.UnimplementedExecutorServiceServer
	upstream executorv1.ExecutorServiceClient
	fault    fault
	srv      *grpc.Server
	addr     string

	// mu guards started, the attempts that went through any stream, by
	// stream number, for faults that look at history.
	mu      sync.Mutex
	started map[string]int
	streams int
}

// proxyStream is one kit stream through the proxy.
type proxyStream struct {
	p  *proxy
	id int
}

func startProxy(t *testing.T, target *sdkExecutor, f fault) *proxy {
	t.Helper()
	conn, err := grpc.NewClient(target.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{upstream: executorv1.NewExecutorServiceClient(conn), fault: f, srv: grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20)),
		addr: lis.Addr().String(), started: map[string]int{}}
	executorv1.RegisterExecutorServiceServer(p.srv, p)
	go func() { _ = p.srv.Serve(lis) }()
	t.Cleanup(func() {
		p.srv.Stop()
		_ = conn.Close()
	})
	return p
}

// shutdown is the proxied executor's shutdown: graceful through the SDK,
// or a hard stop that loses what runs when the fault says so.
func (p *proxy) shutdown(target *sdkExecutor) func(context.Context) error {
	if p.fault.hardStop {
		return func(context.Context) error { p.srv.Stop(); return nil }
	}
	return target.shutdown
}

func (p *proxy) Describe(ctx context.Context, req *executorv1.DescribeRequest) (*executorv1.DescribeResponse, error) {
	resp, err := p.upstream.Describe(ctx, req)
	if err == nil && p.fault.describe != nil {
		p.fault.describe(resp)
	}
	return resp, err
}

func (p *proxy) Execute(down grpc.BidiStreamingServer[executorv1.ExecuteRequest, executorv1.ExecuteResponse]) error {
	ctx, cancel := context.WithCancel(down.Context())
	defer cancel()
	if md, ok := metadata.FromIncomingContext(down.Context()); ok {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	up, err := p.upstream.Execute(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.streams++
	ps := &proxyStream{p: p, id: p.streams}
	p.mu.Unlock()
	go func() {
		for {
			req, err := down.Recv()
			if errors.Is(err, io.EOF) {
				_ = up.CloseSend()
				return
			}
			if err != nil {
				cancel()
				return
			}
			if st := req.GetExecuteStep(); st != nil {
				p.mu.Lock()
				p.started[st.GetStepId()] = ps.id
				p.mu.Unlock()
			}
			if p.fault.down != nil {
				if req = p.fault.down(req); req == nil {
					continue
				}
			}
			if err := up.Send(req); err != nil {
				return
			}
		}
	}()
	for {
		msg, err := up.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		out := []*executorv1.ExecuteResponse{msg}
		if p.fault.up != nil {
			out = p.fault.up(ps, msg)
		}
		for _, m := range out {
			if err := down.Send(m); err != nil {
				return err
			}
		}
	}
}

// startedOn is the proxy stream a step was sent on.
func (ps *proxyStream) startedOn(stepID string) int {
	ps.p.mu.Lock()
	defer ps.p.mu.Unlock()
	return ps.p.started[stepID]
}

// runKit runs the kit against addr with the test timings.
func runKit(t *testing.T, addr string, mod func(*Options)) *Report {
	t.Helper()
	opts := Options{Address: addr, HeartbeatInterval: testHeartbeat, CaseTimeout: testCaseTimeout}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	report, err := Run(ctx, opts)
	require.NoError(t, err)
	return report
}
