package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"negative capacity":  {Capacity: -1},
		"negative heartbeat": {HeartbeatInterval: -time.Second},
		"negative register":  {RegisterInterval: -time.Second},
		"negative shutdown":  {ShutdownTimeout: -time.Second},
		"negative receive":   {MaxReceiveBytes: -1},
		"receive over 2 GiB": {MaxReceiveBytes: 1 << 31},
	} {
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
	}

	e, err := New(Config{})
	require.NoError(t, err)
	require.NotEmpty(t, e.ID())
	other, err := New(Config{})
	require.NoError(t, err)
	require.NotEqual(t, e.ID(), other.ID(), "default ids must be unique per executor")

	named, err := New(Config{ID: "exec-7"})
	require.NoError(t, err)
	require.Equal(t, "exec-7", named.ID())
}

func TestHandleRejectsBadRegistrations(t *testing.T) {
	t.Parallel()
	e, err := New(Config{Logger: testLogger()})
	require.NoError(t, err)
	noop := func(context.Context, *Request) (any, error) { return nil, nil }

	require.ErrorIs(t, e.Handle("", noop), ErrInvalidHandler)
	require.ErrorIs(t, e.Handle("x", nil), ErrInvalidHandler)
	require.NoError(t, e.Handle("x", noop))
	require.ErrorIs(t, e.Handle("x", noop), ErrDuplicateHandler)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, lis) }()
	// Once Serve has begun the handler set is frozen and Serve is one-shot.
	require.Eventually(t, func() bool { return errors.Is(e.Handle("y", noop), ErrStarted) }, waitFor, time.Millisecond)
	lis2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.ErrorIs(t, e.Serve(context.Background(), lis2), ErrStarted)
	cancel()
	require.NoError(t, <-done)
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	noop := func(context.Context, *Request) (any, error) { return nil, nil }
	s := startExecutor(t, Config{ID: "exec-describe", Capacity: 3}, map[string]HandlerFunc{
		"zeta": noop, "alpha": noop, "mid": noop,
	})
	c := dialExecutor(t, s.addr)

	resp, err := c.client.Describe(context.Background(), &executorv1.DescribeRequest{CoordinatorId: "test"})
	require.NoError(t, err)
	require.Equal(t, "exec-describe", resp.GetExecutorId())
	require.Equal(t, []string{"alpha", "mid", "zeta"}, resp.GetHandlers())
	require.EqualValues(t, 3, resp.GetCapacity())
	require.Equal(t, "go", resp.GetLanguage())
	require.Equal(t, SDKVersion, resp.GetSdkVersion())
	require.EqualValues(t, 1, resp.GetProtocolVersion())
	require.Equal(t, []string{"cancel", "heartbeat", "progress", "report"}, resp.GetCapabilities())
	require.EqualValues(t, DefaultMaxReceiveBytes, resp.GetMaxReceiveBytes())
}

type quotaError struct{}

func (quotaError) Error() string { return "quota exhausted" }

func TestExecuteResults(t *testing.T) {
	t.Parallel()
	returning := func(out any, err error) HandlerFunc {
		return func(context.Context, *Request) (any, error) { return out, err }
	}
	s := startExecutor(t, Config{}, map[string]HandlerFunc{
		"struct":    returning(struct{ A int }{A: 1}, nil),
		"raw":       returning(json.RawMessage(`[1, 2]`), nil),
		"bytes":     returning([]byte(`"text"`), nil),
		"nil":       returning(nil, nil),
		"notjson":   returning(json.RawMessage(`{"open":`), nil),
		"retryable": returning(nil, errors.New("boom")),
		"typed":     returning(nil, fmt.Errorf("calling api: %w", quotaError{})),
		"permanent": returning(nil, Permanent(errors.New("bad input"))),
		"backoff":   returning(nil, RetryAfter(errors.New("slow down"), 1500*time.Millisecond)),
		"classed":   returning(nil, WithClass(fmt.Errorf("upstream: %w", io.ErrUnexpectedEOF), "Upstream")),
		"stacked":   returning(nil, Permanent(WithClass(RetryAfter(errors.New("all three"), time.Second), "Stacked"))),
	})
	c := dialExecutor(t, s.addr)
	stream := c.open(t)

	type want struct {
		results   string // JSON on success
		class     string // on failure
		message   string
		permanent bool
		backoff   time.Duration
	}
	cases := map[string]want{
		"struct":    {results: `{"A":1}`},
		"raw":       {results: `[1, 2]`},
		"bytes":     {results: `"text"`},
		"nil":       {results: `{}`},
		"notjson":   {class: ClassInvalidResult, message: "results: not valid JSON", permanent: true},
		"retryable": {class: "*errors.errorString", message: "boom"},
		"typed":     {class: "executor.quotaError", message: "calling api: quota exhausted"},
		"permanent": {class: "*errors.errorString", message: "bad input", permanent: true},
		"backoff":   {class: "*errors.errorString", message: "slow down", backoff: 1500 * time.Millisecond},
		"classed":   {class: "Upstream", message: "upstream: unexpected EOF"},
		"stacked":   {class: "Stacked", message: "all three", permanent: true, backoff: time.Second},
	}
	steps := make(map[string]*executorv1.ExecuteStep)
	attempt := int32(1)
	for handler := range cases {
		step := newStep(handler, attempt)
		attempt++
		steps[step.GetStepId()] = step
		stream.send(t, step)
	}
	for range cases {
		res := stream.result(t)
		step := steps[res.GetStepId()]
		require.NotNil(t, step, "result for a step never sent")
		requireEcho(t, step, s.exec, res)
		w := cases[step.GetHandler()]
		if w.results != "" {
			require.NotNil(t, res.GetSuccess(), "%s: %v", step.GetHandler(), res.GetFailure())
			require.JSONEq(t, w.results, string(res.GetSuccess().GetResults()), step.GetHandler())
			continue
		}
		f := res.GetFailure()
		require.NotNil(t, f, step.GetHandler())
		require.Equal(t, w.class, f.GetErrorClass(), step.GetHandler())
		require.Equal(t, w.message, f.GetMessage(), step.GetHandler())
		require.Equal(t, w.permanent, f.GetPermanent(), step.GetHandler())
		if w.backoff == 0 {
			require.Nil(t, f.GetBackoff(), step.GetHandler())
		} else {
			require.Equal(t, w.backoff, f.GetBackoff().AsDuration(), step.GetHandler())
		}
	}
}

func TestRequestCarriesStep(t *testing.T) {
	t.Parallel()
	type seen struct {
		req         *Request
		ctxDeadline time.Time
		hasDeadline bool
	}
	got := make(chan seen, 1)
	s := startExecutor(t, Config{}, map[string]HandlerFunc{
		"inspect": func(ctx context.Context, req *Request) (any, error) {
			d, ok := ctx.Deadline()
			got <- seen{req: req, ctxDeadline: d, hasDeadline: ok}
			return nil, nil
		},
	})
	stream := dialExecutor(t, s.addr).open(t)
	deadline := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	step := newStep("inspect", 4)
	step.Deadline = timestamppb.New(deadline)
	step.HandlerConfig = []byte(`{"ms": 5}`)
	step.Context = []byte(`{"order": 42}`)
	step.ParentResults = map[string][]byte{"fetch": []byte(`{"ok": true}`)}
	step.Namespace, step.TemplateName, step.TemplateVersion = "shop", "checkout", "1.2.0"
	stream.send(t, step)

	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	require.NotNil(t, res.GetSuccess())
	sn := <-got
	require.True(t, sn.hasDeadline, "handler ctx must carry the step deadline")
	require.True(t, deadline.Equal(sn.ctxDeadline))
	req := sn.req
	require.Equal(t, step.GetTaskId(), req.TaskID)
	require.Equal(t, step.GetStepId(), req.StepID)
	require.Equal(t, "inspect_step", req.StepName)
	require.Equal(t, "inspect", req.Handler)
	require.Equal(t, 4, req.Attempt)
	require.True(t, deadline.Equal(req.Deadline))
	require.JSONEq(t, `{"ms": 5}`, string(req.Config))
	require.JSONEq(t, `{"order": 42}`, string(req.Context))
	require.Len(t, req.ParentResults, 1)
	require.JSONEq(t, `{"ok": true}`, string(req.ParentResults["fetch"]))
	require.Equal(t, "shop", req.Namespace)
	require.Equal(t, "checkout", req.TemplateName)
	require.Equal(t, "1.2.0", req.TemplateVersion)
}

func TestUnknownHandlerFailsPermanently(t *testing.T) {
	t.Parallel()
	s := startExecutor(t, Config{}, map[string]HandlerFunc{
		"known": func(context.Context, *Request) (any, error) { return nil, nil },
	})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("missing_handler", 2)
	stream.send(t, step)

	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	f := res.GetFailure()
	require.NotNil(t, f)
	require.True(t, f.GetPermanent())
	require.Equal(t, ClassUnknownHandler, f.GetErrorClass())
	require.Contains(t, f.GetMessage(), `"missing_handler"`)
	require.Contains(t, f.GetMessage(), "known")
}

func TestPanicIsRetryableFailure(t *testing.T) {
	t.Parallel()
	s := startExecutor(t, Config{Capacity: 1}, map[string]HandlerFunc{
		"explode": func(context.Context, *Request) (any, error) { panic("kaboom") },
		"noop":    func(context.Context, *Request) (any, error) { return nil, nil },
	})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("explode", 1)
	stream.send(t, step)

	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	f := res.GetFailure()
	require.NotNil(t, f)
	require.False(t, f.GetPermanent())
	require.Equal(t, ClassPanic, f.GetErrorClass())
	require.Contains(t, f.GetMessage(), "kaboom")

	// The panic freed its slot: with capacity 1 the next step still runs.
	next := newStep("noop", 1)
	stream.send(t, next)
	require.NotNil(t, stream.result(t).GetSuccess())
}

// TestGoexitIsAnsweredAndEndsOnlyItsRun: a handler that calls
// runtime.Goexit ends the goroutine it ran on (handler goroutines are
// reused, see spawn), yet its step is answered and the next step runs.
func TestGoexitIsAnsweredAndEndsOnlyItsRun(t *testing.T) {
	t.Parallel()
	s := startExecutor(t, Config{Capacity: 1}, map[string]HandlerFunc{
		"exit": func(context.Context, *Request) (any, error) { runtime.Goexit(); return nil, nil },
		"noop": func(context.Context, *Request) (any, error) { return nil, nil },
	})
	stream := dialExecutor(t, s.addr).open(t)
	for i := range 3 {
		step := newStep("exit", 1)
		stream.send(t, step)
		res := stream.result(t)
		requireEcho(t, step, s.exec, res)
		require.Equal(t, ClassPanic, res.GetFailure().GetErrorClass(), "run %d", i)
		require.Contains(t, res.GetFailure().GetMessage(), "runtime.Goexit")

		next := newStep("noop", 1)
		stream.send(t, next)
		require.NotNil(t, stream.result(t).GetSuccess(), "run %d", i)
	}
}

// TestHandlerGoroutinesAreReused: a step that arrives while a handler
// goroutine waits for work runs on it, keeping the stack an earlier step
// grew, rather than on a new goroutine.
func TestHandlerGoroutinesAreReused(t *testing.T) {
	t.Parallel()
	ran := make(chan string, 8)
	s := startExecutor(t, Config{Capacity: 1}, map[string]HandlerFunc{
		"where": func(context.Context, *Request) (any, error) {
			buf := make([]byte, 64)
			header, _, _ := strings.Cut(string(buf[:runtime.Stack(buf, false)]), " [")
			ran <- header // "goroutine N"
			return nil, nil
		},
	})
	stream := dialExecutor(t, s.addr).open(t)
	var goroutines []string
	for range 4 {
		stream.send(t, newStep("where", 1))
		require.NotNil(t, stream.result(t).GetSuccess())
		goroutines = append(goroutines, <-ran)
		select {
		case <-s.waiting:
		case <-time.After(waitFor):
			t.Fatal("the handler goroutine never waited for another run")
		}
	}
	require.Regexp(t, `^goroutine \d+$`, goroutines[0])
	for i, g := range goroutines {
		require.Equal(t, goroutines[0], g, "step %d", i)
	}
}

func TestCancelStepCancelsHandler(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{}, map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).open(t)
	other := newStep("block", 1)
	step := newStep("block", 3)
	stream.send(t, other)
	stream.send(t, step)
	g.awaitStart(t)
	g.awaitStart(t)

	// A cancel for another attempt of the same step must not touch it.
	stale := &executorv1.ExecuteStep{TaskId: step.GetTaskId(), StepId: step.GetStepId(), Attempt: 2}
	stream.cancelStep(t, stale, "stale")
	stream.cancelStep(t, step, "task cancelled by operator")

	require.ErrorIs(t, g.awaitCtxErr(t), context.Canceled)
	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	f := res.GetFailure()
	require.NotNil(t, f)
	require.Equal(t, ClassCancelled, f.GetErrorClass())
	require.False(t, f.GetPermanent())
	require.Contains(t, f.GetMessage(), "task cancelled by operator")

	close(g.release)
	res = stream.result(t)
	requireEcho(t, other, s.exec, res)
	require.NotNil(t, res.GetSuccess(), "the other step was never cancelled")
}

func TestDeadlineCancelsHandler(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{}, map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("block", 1)
	// Far enough ahead that the handler has started before it passes, on a
	// loaded machine under -race too (at 50 ms CI once refused the step as
	// already late); the handler then waits for it.
	step.Deadline = timestamppb.New(time.Now().Add(2 * time.Second))
	stream.send(t, step)
	g.awaitStart(t)

	require.ErrorIs(t, g.awaitCtxErr(t), context.DeadlineExceeded)
	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	f := res.GetFailure()
	require.NotNil(t, f)
	require.Equal(t, ClassDeadlineExceeded, f.GetErrorClass())
	require.False(t, f.GetPermanent())

	// A step whose deadline already passed is refused without running.
	late := newStep("block", 1)
	late.Deadline = timestamppb.New(time.Now().Add(-time.Second))
	stream.send(t, late)
	res = stream.result(t)
	requireEcho(t, late, s.exec, res)
	require.Equal(t, ClassDeadlineExceeded, res.GetFailure().GetErrorClass())
	require.Empty(t, g.started, "expired step must not start its handler")
}

func TestCapacityIsRespected(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{Capacity: 2}, map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).open(t)
	first, second, third := newStep("block", 1), newStep("block", 1), newStep("block", 1)
	stream.send(t, first)
	stream.send(t, second)
	g.awaitStart(t)
	g.awaitStart(t)

	stream.send(t, third)
	res := stream.result(t)
	requireEcho(t, third, s.exec, res)
	f := res.GetFailure()
	require.NotNil(t, f)
	require.Equal(t, ClassOverCapacity, f.GetErrorClass())
	require.False(t, f.GetPermanent())
	require.Empty(t, g.started, "the over-capacity step must not run")

	close(g.release)
	done := map[string]bool{}
	for range 2 {
		res := stream.result(t)
		require.NotNil(t, res.GetSuccess())
		done[res.GetStepId()] = true
	}
	require.Equal(t, map[string]bool{first.GetStepId(): true, second.GetStepId(): true}, done)

	// Slots are free again once results are out.
	again := newStep("block", 2)
	stream.send(t, again)
	res = stream.result(t)
	requireEcho(t, again, s.exec, res)
	require.NotNil(t, res.GetSuccess())
}

func TestHeartbeatsListRunningSteps(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{HeartbeatInterval: 10 * time.Millisecond}, map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).open(t)

	idle := stream.next(t, func(m *executorv1.ExecuteResponse) bool { return m.GetHeartbeat() != nil })
	require.Empty(t, idle.GetHeartbeat().GetRunningStepIds())
	require.Empty(t, idle.GetHeartbeat().GetRunning())

	step := newStep("block", 1)
	stream.send(t, step)
	g.awaitStart(t)
	// Every interval, not only at stream open, the attempt is listed.
	for range 2 {
		hb := stream.next(t, func(m *executorv1.ExecuteResponse) bool {
			return len(m.GetHeartbeat().GetRunning()) > 0
		}).GetHeartbeat()
		require.Equal(t, []attemptID{attemptOf(step)}, runningOf(hb))
		require.Equal(t, []string{step.GetStepId()}, hb.GetRunningStepIds())
	}
	close(g.release)
	require.NotNil(t, stream.result(t).GetSuccess())
}

func TestProgressReachesStream(t *testing.T) {
	t.Parallel()
	s := startExecutor(t, Config{}, map[string]HandlerFunc{
		"long": func(_ context.Context, req *Request) (any, error) {
			req.Progress(40, "fetched")
			req.Progress(250, "overshoot")
			return nil, nil
		},
	})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("long", 2)
	stream.send(t, step)

	var progress []*executorv1.StepProgress
	res := stream.next(t, func(m *executorv1.ExecuteResponse) bool {
		if p := m.GetProgress(); p != nil {
			progress = append(progress, p)
		}
		return m.GetStepResult() != nil
	})
	require.NotNil(t, res.GetStepResult().GetSuccess())
	require.Len(t, progress, 2, "progress is queued before the result on the same stream")
	require.Equal(t, step.GetStepId(), progress[0].GetStepId())
	require.Equal(t, step.GetTaskId(), progress[0].GetTaskId())
	require.EqualValues(t, 2, progress[0].GetAttempt())
	require.Equal(t, "fetched", progress[0].GetMessage())
	require.InDelta(t, 40, progress[0].GetPercent(), 0)
	require.InDelta(t, 100, progress[1].GetPercent(), 0, "percent is clamped")
}

func TestDuplicateStepIsAnsweredOnce(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := startExecutor(t, Config{}, map[string]HandlerFunc{"block": g.handler})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("block", 1)
	stream.send(t, step)
	g.awaitStart(t)
	stream.send(t, step)
	marker := newStep("missing", 1)
	stream.send(t, marker)
	// The marker's refusal comes back first; the duplicate produced nothing.
	require.Equal(t, marker.GetStepId(), stream.result(t).GetStepId())
	close(g.release)
	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	require.NotNil(t, res.GetSuccess())
	require.Empty(t, g.started, "the duplicate must not start a second handler")
}

func TestResultOverLimitIsPermanentFailure(t *testing.T) {
	t.Parallel()
	s := startExecutor(t, Config{MaxResultBytes: 100}, map[string]HandlerFunc{
		"big": func(context.Context, *Request) (any, error) {
			return map[string]string{"blob": strings.Repeat("x", 200)}, nil
		},
	})
	stream := dialExecutor(t, s.addr).open(t)
	step := newStep("big", 1)
	stream.send(t, step)
	res := stream.result(t)
	requireEcho(t, step, s.exec, res)
	f := res.GetFailure()
	require.NotNil(t, f)
	require.True(t, f.GetPermanent())
	require.Equal(t, ClassResultTooLarge, f.GetErrorClass())
	require.Contains(t, f.GetMessage(), "MaxResultBytes")
}

func TestMetricsCountStepsByHandlerAndOutcome(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := startExecutor(t, Config{Registerer: reg}, map[string]HandlerFunc{
		"ok":  func(context.Context, *Request) (any, error) { return nil, nil },
		"bad": func(context.Context, *Request) (any, error) { return nil, Permanent(errors.New("no")) },
	})
	stream := dialExecutor(t, s.addr).open(t)
	for _, h := range []string{"ok", "ok", "bad"} {
		stream.send(t, newStep(h, 1))
		stream.result(t)
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s.exec.metrics.finished.WithLabelValues("ok", "success")) == 2 &&
			testutil.ToFloat64(s.exec.metrics.finished.WithLabelValues("bad", "permanent")) == 1
	}, 5*time.Second, 10*time.Millisecond)
	n, err := testutil.GatherAndCount(reg, "tasker_executor_steps_total", "tasker_executor_capacity")
	require.NoError(t, err)
	require.Equal(t, 3, n, "two handler/outcome series and the capacity gauge")
}
