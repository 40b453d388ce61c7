package builtin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tasker-go/tasker/executor"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

const waitFor = 10 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bundle is a real executor with the built-ins, served on 127.0.0.1, and one
// Execute stream to it opened the way a coordinator would.
type bundle struct {
	exec   *executor.Executor
	client executorv1.ExecutorServiceClient
	stream grpc.BidiStreamingClient[executorv1.ExecuteRequest, executorv1.ExecuteResponse]
	msgs   chan *executorv1.ExecuteResponse
}

func setup(t *testing.T) *bundle {
	t.Helper()
	e, err := executor.New(executor.Config{Logger: slog.New(slog.DiscardHandler), HeartbeatInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, Register(e))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveCtx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.Serve(serveCtx, lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	client := executorv1.NewExecutorServiceClient(conn)
	streamCtx, stopStream := context.WithCancel(context.Background())
	stream, err := client.Execute(streamCtx)
	require.NoError(t, err)
	b := &bundle{exec: e, client: client, stream: stream, msgs: make(chan *executorv1.ExecuteResponse, 64)}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case b.msgs <- msg:
			case <-streamCtx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		stopServe()
		require.NoError(t, <-served)
		stopStream()
		<-readDone
		require.NoError(t, conn.Close())
	})
	return b
}

func (b *bundle) send(t *testing.T, step *executorv1.ExecuteStep) {
	t.Helper()
	require.NoError(t, b.stream.Send(&executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_ExecuteStep{ExecuteStep: step}}))
}

// next returns the next message that keep accepts.
func (b *bundle) next(t *testing.T, keep func(*executorv1.ExecuteResponse) bool) *executorv1.ExecuteResponse {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case msg := <-b.msgs:
			if keep(msg) {
				return msg
			}
		case <-timeout:
			t.Fatal("timed out waiting for the executor")
		}
	}
}

// run sends a step and returns its result.
func (b *bundle) run(t *testing.T, step *executorv1.ExecuteStep) *executorv1.StepResult {
	t.Helper()
	b.send(t, step)
	res := b.next(t, func(m *executorv1.ExecuteResponse) bool {
		return m.GetStepResult().GetStepId() == step.GetStepId()
	}).GetStepResult()
	require.Equal(t, step.GetAttempt(), res.GetAttempt())
	return res
}

func step(handler string, attempt int32, config string) *executorv1.ExecuteStep {
	s := &executorv1.ExecuteStep{
		TaskId: "task-" + uuid.NewString(), StepId: "step-" + uuid.NewString(),
		StepName: handler, Handler: handler, Attempt: attempt,
	}
	if config != "" {
		s.HandlerConfig = []byte(config)
	}
	return s
}

func TestRegisterHostsAllBuiltins(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, err := b.client.Describe(context.Background(), &executorv1.DescribeRequest{})
	require.NoError(t, err)
	require.Equal(t, []string{NameDecide, NameEcho, NameFlaky, NameNoop, NameSleep}, resp.GetHandlers())

	again, err := executor.New(executor.Config{})
	require.NoError(t, err)
	require.NoError(t, Register(again))
	require.ErrorIs(t, Register(again), executor.ErrDuplicateHandler)
}

func TestNoop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.run(t, step(NameNoop, 1, `{"ignored": true}`))
	require.Equal(t, `{}`, string(res.GetSuccess().GetResults()))
}

func TestEcho(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := step(NameEcho, 1, `{"greeting":  "hi"}`)
	s.Context = []byte(`{"order": {"id": 7, "items": [1, 2]}}`)
	s.ParentResults = map[string][]byte{"fetch_user": []byte(`{"name": "ada"}`), "fetch_order": []byte(`[3]`)}
	res := b.run(t, s)
	// Raw JSON is copied byte for byte, parents in name order.
	require.Equal(t,
		`{"context":{"order": {"id": 7, "items": [1, 2]}},"parents":{"fetch_order":[3],"fetch_user":{"name": "ada"}},"config":{"greeting":  "hi"}}`,
		string(res.GetSuccess().GetResults()))

	bare := b.run(t, step(NameEcho, 1, ""))
	require.JSONEq(t, `{"context": null, "parents": {}, "config": null}`, string(bare.GetSuccess().GetResults()))
}

func TestDecide(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.run(t, step(NameDecide, 1, `{"next": ["customs", "ship"]}`))
	require.JSONEq(t, `{"next": ["customs", "ship"]}`, string(res.GetSuccess().GetResults()))
	none := b.run(t, step(NameDecide, 1, ``))
	require.JSONEq(t, `{"next": []}`, string(none.GetSuccess().GetResults()))
	for _, bad := range []string{`{"next": "ship"}`, `{"next": [1]}`, `{"next": {}}`} {
		res := b.run(t, step(NameDecide, 1, bad))
		require.Equal(t, ClassInvalidConfig, res.GetFailure().GetErrorClass(), bad)
		require.True(t, res.GetFailure().GetPermanent(), bad)
		require.Contains(t, res.GetFailure().GetMessage(), "config.next", bad)
	}
}

// Decide branches on data: the case of the context field config.on,
// config.next when the value has none.
func TestDecideOnContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := `{"on": "region", "cases": {"intl": ["customs", "ship"], "home": ["ship"], "5": []}, "next": ["review"]}`
	for ctx, want := range map[string]string{
		`{"region": "intl"}`: `["customs", "ship"]`,
		`{"region": "home"}`: `["ship"]`,
		`{"region": 5}`:      `[]`,
		`{"region": "mars"}`: `["review"]`,
		`{}`:                 `["review"]`,
	} {
		s := step(NameDecide, 1, cfg)
		s.Context = []byte(ctx)
		res := b.run(t, s)
		require.JSONEq(t, `{"next": `+want+`}`, string(res.GetSuccess().GetResults()), ctx)
	}
	for bad, field := range map[string]string{`{"on": 3}`: "config.on", `{"on": "x", "cases": []}`: "config.cases"} {
		res := b.run(t, step(NameDecide, 1, bad))
		require.Equal(t, ClassInvalidConfig, res.GetFailure().GetErrorClass(), bad)
		require.Contains(t, res.GetFailure().GetMessage(), field, bad)
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.run(t, step(NameSleep, 1, `{"ms": 20}`))
	require.JSONEq(t, `{"slept_ms": 20}`, string(res.GetSuccess().GetResults()))

	res = b.run(t, step(NameSleep, 1, ""))
	require.JSONEq(t, `{"slept_ms": 0}`, string(res.GetSuccess().GetResults()))
}

func TestSleepStopsEarlyWhenCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := step(NameSleep, 2, `{"ms": 600000}`)
	b.send(t, s)
	// Cancel only once a heartbeat shows the step running.
	b.next(t, func(m *executorv1.ExecuteResponse) bool {
		ids := m.GetHeartbeat().GetRunningStepIds()
		return len(ids) == 1 && ids[0] == s.GetStepId()
	})
	require.NoError(t, b.stream.Send(&executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_CancelStep{CancelStep: &executorv1.CancelStep{
		TaskId: s.GetTaskId(), StepId: s.GetStepId(), Attempt: s.GetAttempt(), Reason: "test",
	}}}))
	res := b.next(t, func(m *executorv1.ExecuteResponse) bool { return m.GetStepResult() != nil }).GetStepResult()
	require.Equal(t, s.GetStepId(), res.GetStepId())
	require.Equal(t, executor.ClassCancelled, res.GetFailure().GetErrorClass())
	require.Contains(t, res.GetFailure().GetMessage(), "sleep: stopped")
}

func TestSleepStopsAtDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := step(NameSleep, 1, `{"ms": 600000}`)
	s.Deadline = timestamppb.New(time.Now().Add(30 * time.Millisecond))
	res := b.run(t, s)
	require.Equal(t, executor.ClassDeadlineExceeded, res.GetFailure().GetErrorClass())
	require.False(t, res.GetFailure().GetPermanent())
}

func TestSleepReturnsCtxError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Sleep(ctx, &executor.Request{Config: json.RawMessage(`{"ms": 600000}`)})
	require.ErrorIs(t, err, context.Canceled)
}

func TestFlakyFailsThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := `{"fail_times": 2}`
	for attempt := int32(1); attempt <= 2; attempt++ {
		res := b.run(t, step(NameFlaky, attempt, cfg))
		f := res.GetFailure()
		require.NotNil(t, f, "attempt %d", attempt)
		require.Equal(t, ClassFlakyFailure, f.GetErrorClass())
		require.False(t, f.GetPermanent())
		require.Nil(t, f.GetBackoff())
	}
	res := b.run(t, step(NameFlaky, 3, cfg))
	require.JSONEq(t, `{"attempt": 3}`, string(res.GetSuccess().GetResults()))

	res = b.run(t, step(NameFlaky, 1, ""))
	require.JSONEq(t, `{"attempt": 1}`, string(res.GetSuccess().GetResults()), "no fail_times means no failures")
}

func TestFlakyPermanentAndBackoff(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.run(t, step(NameFlaky, 1, `{"fail_times": 1, "permanent": true}`))
	require.True(t, res.GetFailure().GetPermanent())
	require.Equal(t, ClassFlakyFailure, res.GetFailure().GetErrorClass())

	res = b.run(t, step(NameFlaky, 1, `{"fail_times": 3, "backoff_ms": 250}`))
	require.False(t, res.GetFailure().GetPermanent())
	require.Equal(t, ClassFlakyFailure, res.GetFailure().GetErrorClass())
	require.Equal(t, 250*time.Millisecond, res.GetFailure().GetBackoff().AsDuration())
}

func TestBadConfigFailsPermanently(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := b.run(t, step(NameSleep, 1, `{"ms": "abc"}`))
	f := res.GetFailure()
	require.NotNil(t, f)
	require.True(t, f.GetPermanent())
	require.Equal(t, ClassInvalidConfig, f.GetErrorClass())
	require.Contains(t, f.GetMessage(), "config.ms")
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		handler executor.HandlerFunc
		config  string
		field   string
	}{
		{Sleep, `{"ms": "abc"}`, "config.ms"},
		{Sleep, `{"ms": -5}`, "config.ms"},
		{Sleep, `{"ms": 1e300}`, "config.ms"},
		{Sleep, `[1, 2]`, "JSON object"},
		{Flaky, `{"fail_times": 1.5}`, "config.fail_times"},
		{Flaky, `{"fail_times": "2"}`, "config.fail_times"},
		{Flaky, `{"permanent": "yes"}`, "config.permanent"},
		{Flaky, `{"backoff_ms": {}}`, "config.backoff_ms"},
	}
	for _, tc := range cases {
		_, err := tc.handler(context.Background(), &executor.Request{Attempt: 1, Config: json.RawMessage(tc.config)})
		require.ErrorIs(t, err, ErrInvalidConfig, tc.config)
		require.ErrorContains(t, err, tc.field, tc.config)
	}
}
