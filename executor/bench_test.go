package executor

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// BenchmarkExecute measures the executor's path for one step, from an
// ExecuteStep read off the stream to its StepResult sent back, over real
// gRPC on loopback: 64 steps in flight per op, a handler that does nothing.
// The stand-in coordinator runs in the same process, so its share (encoding
// the requests, decoding the results) is in the figure too, the same for
// every variant. tracing-off is the default configuration; tracing-on
// records every handler span, as with an exporter configured.
func BenchmarkExecute(b *testing.B) {
	const window = 64
	for _, bc := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"tracing-off", nil},
		{"tracing-on", sdktrace.NewTracerProvider()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			noop := func(context.Context, *Request) (any, error) { return nil, nil }
			s := startExecutor(b, Config{Capacity: window, TracerProvider: bc.tp}, map[string]HandlerFunc{"noop": noop})
			stream := dialExecutor(b, s.addr).open(b)
			steps := make([]*executorv1.ExecuteStep, window)
			for i := range steps {
				steps[i] = newStep("noop", 0)
				steps[i].TraceContext = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
			}
			b.ReportAllocs()
			attempt := int32(0)
			for b.Loop() {
				// Each op a new attempt of each step, so none is taken
				// for a repeat of one already answered.
				attempt++
				for _, st := range steps {
					st.Attempt = attempt
					stream.send(b, st)
				}
				for range steps {
					if r := stream.result(b); r.GetSuccess() == nil {
						b.Fatalf("step failed: %v", r.GetFailure())
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*window), "ns/step")
		})
	}
}
