package coordinator

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tasker-go/tasker/state"
)

// A task is traced as one span from its creation (or from when this
// coordinator took it over) to its end, with a child span per step
// attempt from dispatch to result. The attempt's context travels to the
// executor inside ExecuteStep, so the handler's spans join the trace.

// tracing holds the engine's tracer and the propagator that writes trace
// context into ExecuteStep.
type tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	// off is set for the no-op provider: nothing is recorded, and only a
	// caller's trace context has to travel on to the executors.
	off bool
}

func newTracing(tp trace.TracerProvider) tracing {
	_, off := tp.(noop.TracerProvider)
	return tracing{
		tracer: tp.Tracer("github.com/tasker-go/tasker/coordinator"),
		prop:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		off:    off,
	}
}

// startTask opens the task's span; parent may carry the caller's span.
func (t tracing) startTask(parent context.Context, tr *taskRun, continued bool) {
	name := "task " + tr.task.Namespace + "/" + tr.task.Name
	if continued {
		name += " (continued)"
	}
	_, tr.span = t.tracer.Start(parent, name, trace.WithAttributes(
		attribute.String("tasker.task.id", tr.task.ID),
		attribute.String("tasker.template", tr.task.Namespace+"/"+tr.task.Name+"@"+tr.task.Version),
	))
}

// endTask closes the task's span with its final state.
func (t tracing) endTask(tr *taskRun) {
	if tr.span == nil {
		return
	}
	tr.span.SetAttributes(attribute.String("tasker.task.state", string(tr.task.State)))
	if tr.task.State == state.Error {
		tr.span.SetStatus(otelcodes.Error, "task ended in error")
	}
	tr.span.End()
	tr.span = nil
}

// startAttempt opens the span of step i's attempt being dispatched and
// returns its context for the executor.
func (t tracing) startAttempt(tr *taskRun, i int, executorID string) map[string]string {
	if t.off && (tr.span == nil || !tr.span.SpanContext().IsValid()) {
		// Tracing is off and the task's span is empty: so would the
		// attempt's be, and the context injected from it (which cost each
		// dispatch about 600 bytes of garbage).
		return nil
	}
	s := tr.steps[i]
	parent := context.Background()
	if tr.span != nil {
		parent = trace.ContextWithSpan(parent, tr.span)
	}
	ctx, span := t.tracer.Start(parent, "step "+s.Name, trace.WithAttributes(
		attribute.String("tasker.task.id", tr.task.ID),
		attribute.String("tasker.step.name", s.Name),
		attribute.String("tasker.step.handler", s.Handler),
		attribute.Int("tasker.step.attempt", s.Attempts),
		attribute.String("tasker.executor.id", executorID),
	))
	s.span = span
	carrier := propagation.MapCarrier{}
	t.prop.Inject(ctx, carrier)
	return carrier
}

// endAttempt closes the span of step i's current attempt; a non-empty
// failure marks it failed.
func (t tracing) endAttempt(s *stepRun, failure string) {
	if s.span == nil {
		return
	}
	if failure != "" {
		s.span.SetStatus(otelcodes.Error, failure)
	}
	s.span.End()
	s.span = nil
}
