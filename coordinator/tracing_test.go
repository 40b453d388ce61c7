package coordinator_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/examples/templates"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// TestTraceCrossesToExecutor checks that a task is one trace: a span per
// task, a child per step attempt, and the executor's handler span (and the
// handler's own spans) under the attempt that ran it.
func TestTraceCrossesToExecutor(t *testing.T) {
	t.Parallel()
	coordSpans, execSpans := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	coordTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(coordSpans))
	execTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(execSpans))
	h, _ := nodeHarness(t, coordinator.Config{TracerProvider: coordTP}, 0)
	runExecutor(h, executor.Config{TracerProvider: execTP}, listen(t), map[string]executor.HandlerFunc{
		"traced": func(ctx context.Context, _ *executor.Request) (any, error) {
			_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("test").Start(ctx, "charge card")
			span.End()
			return map[string]bool{"ok": true}, nil
		},
	})
	h.apply(`
namespace: test
name: traced
version: 1.0.0
steps:
  - name: first
    handler: noop
  - name: second
    handler: traced
    depends_on: [first]
`)
	task := h.create("test", "traced", map[string]any{})
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)

	byName := func(spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
		out := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range spans {
			out[s.Name()] = s
		}
		return out
	}
	require.Eventually(t, func() bool {
		c, e := byName(coordSpans.Ended()), byName(execSpans.Ended())
		return c["task test/traced"] != nil && c["step second"] != nil && e["charge card"] != nil
	}, 10e9, 10e6, "spans ended")
	c, e := byName(coordSpans.Ended()), byName(execSpans.Ended())
	taskSpan, first, second := c["task test/traced"], c["step first"], c["step second"]
	handler, inner := e["handler traced"], e["charge card"]
	require.NotNil(t, first)
	require.NotNil(t, handler)

	traceID := taskSpan.SpanContext().TraceID()
	for _, s := range []sdktrace.ReadOnlySpan{first, second, handler, inner} {
		require.Equal(t, traceID, s.SpanContext().TraceID(), "%s is in the task's trace", s.Name())
	}
	require.Equal(t, taskSpan.SpanContext().SpanID(), first.Parent().SpanID(), "attempt spans are children of the task span")
	require.Equal(t, taskSpan.SpanContext().SpanID(), second.Parent().SpanID())
	require.Equal(t, second.SpanContext().SpanID(), handler.Parent().SpanID(), "the handler span is a child of its attempt's span")
	require.True(t, handler.Parent().IsRemote(), "the parent came over the wire")
	require.Equal(t, handler.SpanContext().SpanID(), inner.Parent().SpanID(), "the handler's own spans join the trace")
}

// With tracing off in the executor, a handler still runs under its
// attempt's span context from the coordinator, so what it calls can carry
// the task's trace on; only the executor's own span is left out.
func TestTraceReachesHandlerWithExecutorTracingOff(t *testing.T) {
	t.Parallel()
	coordSpans := tracetest.NewSpanRecorder()
	h, _ := nodeHarness(t, coordinator.Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(coordSpans))}, 0)
	seen := make(chan trace.SpanContext, 1)
	runExecutor(h, executor.Config{}, listen(t), map[string]executor.HandlerFunc{
		"traced": func(ctx context.Context, _ *executor.Request) (any, error) {
			seen <- trace.SpanContextFromContext(ctx)
			return nil, nil
		},
	})
	h.apply("namespace: test\nname: traced\nversion: 1.0.0\nsteps:\n  - {name: only, handler: traced}\n")
	task := h.create("test", "traced", map[string]any{})
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	got := <-seen
	var attempt sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range coordSpans.Ended() {
			if s.Name() == "step only" {
				attempt = s
				return true
			}
		}
		return false
	}, 10e9, 10e6, "the attempt's span ended")
	require.True(t, got.IsValid(), "the handler's context carries a span context")
	require.True(t, got.IsRemote(), "it came over the wire")
	require.Equal(t, attempt.SpanContext().TraceID(), got.TraceID())
	require.Equal(t, attempt.SpanContext().SpanID(), got.SpanID())
}

// TestMetricsCountEveryTransition checks the transition counters against
// what the store holds: creation-time transitions count too.
func TestMetricsCountEveryTransition(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h, _ := nodeHarness(t, coordinator.Config{Registerer: reg}, 0)
	runExecutor(h, executor.Config{}, listen(t), nil)
	files, err := templates.All()
	require.NoError(t, err)
	h.apply(string(files["diamond_workflow.yaml"]))
	for i := range 3 {
		task := h.create("tasker", "diamond_workflow", map[string]any{"i": i})
		h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	}
	// sum adds a counter's series, only those with the given state when
	// state is set.
	sum := func(metric, state string) float64 {
		families, err := reg.Gather()
		require.NoError(t, err)
		total := 0.0
		for _, f := range families {
			if f.GetName() != metric {
				continue
			}
			for _, m := range f.GetMetric() {
				match := state == ""
				for _, l := range m.GetLabel() {
					match = match || (l.GetName() == "state" && l.GetValue() == state)
				}
				if match {
					total += m.GetCounter().GetValue()
				}
			}
		}
		return total
	}
	require.EqualValues(t, 3*7, sum("tasker_step_transitions_total", "in_progress"), "roots dispatched at creation count too")
	require.EqualValues(t, 3*7, sum("tasker_step_transitions_total", "complete"))
	require.EqualValues(t, 3, sum("tasker_task_transitions_total", "in_progress"))
	require.EqualValues(t, 3, sum("tasker_task_transitions_total", "complete"))
	require.EqualValues(t, 3, sum("tasker_tasks_created_total", ""))
}
