// Package conformance holds the well-known test handlers that `tasker
// executor-check` (package github.com/tasker-go/tasker/conformance) runs on
// an executor under test: conformance.echo, conformance.sleep and
// conformance.fail, as fixed by the contract in docs/conformance.md. Every
// executor implementation ships the same three, so the kit can check any of
// them the same way.
//
// They are not registered by default: call Register, or start `tasker
// executor --conformance`.
package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/tasker-go/tasker/executor"
)

// Handler names, as the contract fixes them.
const (
	NameEcho  = "conformance.echo"
	NameSleep = "conformance.sleep"
	NameFail  = "conformance.fail"
)

// Names lists the three handlers in sorted order.
func Names() []string { return []string{NameEcho, NameFail, NameSleep} }

// Defaults of conformance.fail's parameters.
const (
	DefaultFailMessage = "conformance failure"
	DefaultFailClass   = "ConformanceError"
)

// ClassInvalidParams is the error_class of a step whose parameters do not
// parse; permanent, since the same parameters fail again.
const ClassInvalidParams = "InvalidParams"

// Register adds the three conformance handlers to e.
func Register(e *executor.Executor) error {
	handlers := []struct {
		name string
		fn   executor.HandlerFunc
	}{
		{NameEcho, Echo},
		{NameSleep, Sleep},
		{NameFail, Fail},
	}
	for _, h := range handlers {
		if err := e.Handle(h.name, h.fn); err != nil {
			return fmt.Errorf("register conformance handlers: %w", err)
		}
	}
	return nil
}

// echoResult is conformance.echo's result; field names are the contract's.
type echoResult struct {
	TaskID          string                     `json:"task_id"`
	StepID          string                     `json:"step_id"`
	StepName        string                     `json:"step_name"`
	Handler         string                     `json:"handler"`
	Attempt         int                        `json:"attempt"`
	IdempotencyKey  string                     `json:"idempotency_key"`
	Namespace       string                     `json:"namespace"`
	TemplateName    string                     `json:"template_name"`
	TemplateVersion string                     `json:"template_version"`
	Context         json.RawMessage            `json:"context"`
	Config          json.RawMessage            `json:"config"`
	ParentResults   map[string]json.RawMessage `json:"parent_results"`
	TraceContext    map[string]string          `json:"trace_context"`
	Pad             string                     `json:"pad,omitempty"`
}

// Echo succeeds at once with everything the step carried, as the handler
// sees it. The trace context is read back from the handler's ctx, not from
// the wire, so the kit checks that the SDK really continued the trace.
func Echo(ctx context.Context, req *executor.Request) (any, error) {
	params, err := paramsOf(req)
	if err != nil {
		return nil, err
	}
	pad, err := number(params, "pad")
	if err != nil {
		return nil, err
	}
	if pad > 1<<30 {
		return nil, invalidParams("pad: %v is too large", pad)
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	out := echoResult{
		TaskID: req.TaskID, StepID: req.StepID, StepName: req.StepName, Handler: req.Handler,
		Attempt: req.Attempt, IdempotencyKey: req.IdempotencyKey,
		Namespace: req.Namespace, TemplateName: req.TemplateName, TemplateVersion: req.TemplateVersion,
		Context: rawOrNull(req.Context), Config: rawOrNull(req.Config),
		ParentResults: map[string]json.RawMessage{},
		TraceContext:  map[string]string(carrier),
		Pad:           strings.Repeat("x", int(pad)),
	}
	for name, raw := range req.ParentResults {
		out.ParentResults[name] = rawOrNull(raw)
	}
	return out, nil
}

// sleepResult is conformance.sleep's result: the executor's wall clock at
// both ends, so the kit can see which attempts overlapped.
type sleepResult struct {
	SleptMS         float64 `json:"slept_ms"`
	StartedUnixNano int64   `json:"started_unix_nano"`
	EndedUnixNano   int64   `json:"ended_unix_nano"`
}

// Sleep waits params.ms milliseconds, or until the attempt is cancelled
// (CancelStep, deadline or shutdown); the SDK then reports the failure as
// Cancelled or DeadlineExceeded.
func Sleep(ctx context.Context, req *executor.Request) (any, error) {
	params, err := paramsOf(req)
	if err != nil {
		return nil, err
	}
	ms, err := number(params, "ms")
	if err != nil {
		return nil, err
	}
	if ms > float64(math.MaxInt64/int64(time.Millisecond)) {
		return nil, invalidParams("ms: %v is too large", ms)
	}
	start := time.Now()
	timer := time.NewTimer(time.Duration(ms * float64(time.Millisecond)))
	defer timer.Stop()
	select {
	case <-timer.C:
		return sleepResult{SleptMS: ms, StartedUnixNano: start.UnixNano(), EndedUnixNano: time.Now().UnixNano()}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("conformance.sleep: stopped after %s of %sms: %w", time.Since(start).Round(time.Millisecond), strconv.FormatFloat(ms, 'f', -1, 64), context.Cause(ctx))
	}
}

// Fail always fails with exactly the message, class, permanence and
// backoff its parameters ask for.
func Fail(_ context.Context, req *executor.Request) (any, error) {
	params, err := paramsOf(req)
	if err != nil {
		return nil, err
	}
	message, class := DefaultFailMessage, DefaultFailClass
	if raw, ok := present(params, "message"); ok {
		if err := json.Unmarshal(raw, &message); err != nil {
			return nil, invalidParams("message: want a string, got %s", clip(raw))
		}
	}
	if raw, ok := present(params, "class"); ok {
		if err := json.Unmarshal(raw, &class); err != nil {
			return nil, invalidParams("class: want a string, got %s", clip(raw))
		}
	}
	permanent := false
	if raw, ok := present(params, "permanent"); ok {
		if err := json.Unmarshal(raw, &permanent); err != nil {
			return nil, invalidParams("permanent: want true or false, got %s", clip(raw))
		}
	}
	backoffMS, err := number(params, "backoff_ms")
	if err != nil {
		return nil, err
	}
	if backoffMS > float64(math.MaxInt64/int64(time.Millisecond)) {
		return nil, invalidParams("backoff_ms: %v is too large", backoffMS)
	}
	fail := executor.WithClass(errors.New(message), class)
	fail = executor.RetryAfter(fail, time.Duration(backoffMS*float64(time.Millisecond)))
	if permanent {
		fail = executor.Permanent(fail)
	}
	return nil, fail
}

// paramsOf reads the parameters from handler_config, or from the task
// context when no config was sent, as the contract says.
func paramsOf(req *executor.Request) (map[string]json.RawMessage, error) {
	src, field := req.Config, "handler_config"
	if len(bytes.TrimSpace(src)) == 0 {
		src, field = req.Context, "context"
	}
	src = bytes.TrimSpace(src)
	if len(src) == 0 || bytes.Equal(src, []byte("null")) {
		return map[string]json.RawMessage{}, nil
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(src, &params); err != nil || params == nil {
		return nil, invalidParams("%s: want a JSON object, got %s", field, clip(src))
	}
	return params, nil
}

func present(params map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	raw, ok := params[name]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, false
	}
	return raw, true
}

// number reads a non-negative number; absent means 0.
func number(params map[string]json.RawMessage, name string) (float64, error) {
	raw, ok := present(params, name)
	if !ok {
		return 0, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil || n < 0 || math.IsInf(n, 0) {
		return 0, invalidParams("%s: want a non-negative number, got %s", name, clip(raw))
	}
	return n, nil
}

func invalidParams(format string, args ...any) error {
	return executor.Permanent(executor.WithClass(fmt.Errorf(format, args...), ClassInvalidParams))
}

// clip shortens raw JSON for an error message.
func clip(raw []byte) string {
	const limit = 80
	if len(raw) <= limit {
		return string(raw)
	}
	return string(raw[:limit]) + "..."
}

func rawOrNull(raw json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("null")
	}
	return raw
}
