package main

import (
	"context"
	"fmt"
	"io"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// newTracerProvider builds the process's tracer provider from the standard
// OTEL_* variables. Tracing is off unless OTEL_TRACES_EXPORTER names an
// exporter: "otlp" sends spans over OTLP/gRPC as OTEL_EXPORTER_OTLP_* say,
// "console" prints them as JSON on out (to look at a trace without a
// backend). OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are honoured.
// The returned function flushes and stops it.
func newTracerProvider(ctx context.Context, service string, getenv func(string) string, out io.Writer) (trace.TracerProvider, func(context.Context) error, error) {
	var exporter sdktrace.SpanExporter
	var err error
	switch kind := getenv("OTEL_TRACES_EXPORTER"); kind {
	case "", "none":
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	case "otlp":
		exporter, err = otlptracegrpc.New(ctx)
	case "console", "stdout":
		exporter, err = stdouttrace.New(stdouttrace.WithWriter(out))
	default:
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", kind)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("trace exporter: %w", err)
	}
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", service)), resource.WithFromEnv())
	if err != nil {
		return nil, nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}
