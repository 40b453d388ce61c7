// Package builtin holds handlers every Tasker deployment can run without
// writing code: for smoke tests, demos, load tests and for exercising the
// coordinator's retry, timeout and cancellation paths end to end.
package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/tasker-go/tasker/executor"
)

// Handler names as registered by Register; templates refer to them.
const (
	NameNoop  = "noop"
	NameEcho  = "echo"
	NameSleep = "sleep"
	NameFlaky = "flaky"
	// NameDecide is for decision steps (template decision: true).
	NameDecide = "decide"
)

// ClassFlakyFailure is the error_class of the failures Flaky makes on
// purpose, so they are easy to tell from real ones.
const ClassFlakyFailure = "FlakyFailure"

// ClassInvalidConfig is the error_class of a failure caused by a step's
// handler config; such failures are permanent, since retrying the same
// config cannot help.
const ClassInvalidConfig = "InvalidConfig"

// ErrInvalidConfig is wrapped by every config error, for errors.Is.
var ErrInvalidConfig = errors.New("invalid handler config")

// Register adds all built-in handlers to e under their Name* names.
func Register(e *executor.Executor) error {
	handlers := []struct {
		name string
		fn   executor.HandlerFunc
	}{
		{NameNoop, Noop},
		{NameEcho, Echo},
		{NameSleep, Sleep},
		{NameFlaky, Flaky},
		{NameDecide, Decide},
	}
	for _, h := range handlers {
		if err := e.Handle(h.name, h.fn); err != nil {
			return fmt.Errorf("register builtin handlers: %w", err)
		}
	}
	return nil
}

// Noop succeeds at once with {}: the cheapest possible step, for measuring
// the orchestration overhead alone.
func Noop(context.Context, *executor.Request) (any, error) {
	return json.RawMessage(`{}`), nil
}

// Echo succeeds with what the step received:
// {"context": <task context>, "parents": {<step>: <results>...}, "config": <handler config>}.
// Raw JSON is copied byte for byte, so tests can check exactly what the
// coordinator passed; a missing context or config is null.
func Echo(_ context.Context, req *executor.Request) (any, error) {
	var b bytes.Buffer
	b.WriteString(`{"context":`)
	writeRaw(&b, req.Context)
	b.WriteString(`,"parents":{`)
	names := make([]string, 0, len(req.ParentResults))
	for name := range req.ParentResults {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		key, err := json.Marshal(name)
		if err != nil {
			return nil, fmt.Errorf("echo: encode parent name: %w", err)
		}
		b.Write(key)
		b.WriteByte(':')
		writeRaw(&b, req.ParentResults[name])
	}
	b.WriteString(`},"config":`)
	writeRaw(&b, req.Config)
	b.WriteByte('}')
	return json.RawMessage(b.Bytes()), nil
}

func writeRaw(b *bytes.Buffer, raw json.RawMessage) {
	if len(bytes.TrimSpace(raw)) == 0 {
		b.WriteString("null")
		return
	}
	b.Write(raw)
}

// Sleep waits config.ms milliseconds (default 0) and succeeds with
// {"slept_ms": N}. It stops early with the ctx error when the step is
// cancelled or times out, which makes it the handler for testing timeouts
// and cancellation.
func Sleep(ctx context.Context, req *executor.Request) (any, error) {
	fields, err := configFields(req.Config)
	if err != nil {
		return nil, err
	}
	ms, err := numberField(fields, "ms")
	if err != nil {
		return nil, err
	}
	if ms > float64(math.MaxInt64/int64(time.Millisecond)) {
		return nil, invalidConfig("config.ms: %v is too large", ms)
	}
	timer := time.NewTimer(time.Duration(ms * float64(time.Millisecond)))
	defer timer.Stop()
	start := time.Now()
	select {
	case <-timer.C:
		return map[string]float64{"slept_ms": ms}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("sleep: stopped after %s of %vms: %w",
			time.Since(start).Round(time.Millisecond), ms, ctx.Err())
	}
}

// Flaky fails while the attempt is at most config.fail_times (default 0),
// then succeeds with {"attempt": N}: the handler for testing retries.
// config.permanent makes its failures permanent and config.backoff_ms asks
// the coordinator for that backoff. Its failures have class FlakyFailure.
func Flaky(_ context.Context, req *executor.Request) (any, error) {
	fields, err := configFields(req.Config)
	if err != nil {
		return nil, err
	}
	failTimes, err := wholeField(fields, "fail_times")
	if err != nil {
		return nil, err
	}
	permanent, err := boolField(fields, "permanent")
	if err != nil {
		return nil, err
	}
	backoffMS, err := numberField(fields, "backoff_ms")
	if err != nil {
		return nil, err
	}
	if backoffMS > float64(math.MaxInt64/int64(time.Millisecond)) {
		return nil, invalidConfig("config.backoff_ms: %v is too large", backoffMS)
	}
	if float64(req.Attempt) > failTimes {
		return map[string]int{"attempt": req.Attempt}, nil
	}
	fail := executor.WithClass(fmt.Errorf("flaky: attempt %d fails on purpose (fail_times %v)", req.Attempt, failTimes), ClassFlakyFailure)
	fail = executor.RetryAfter(fail, time.Duration(backoffMS*float64(time.Millisecond)))
	if permanent {
		fail = executor.Permanent(fail)
	}
	return nil, fail
}

// Decide succeeds with {"next": config.next}: the handler for a decision
// step (decision: true in its template), whose result names the children
// to run. config.next is a list of step names; missing or null, it
// chooses none. To branch on data instead, config.on names a field of the
// task's context and config.cases maps each of its values (as a string) to
// the list of children to run; a value with no case chooses config.next.
// The coordinator, not Decide, checks that the names are children.
func Decide(_ context.Context, req *executor.Request) (any, error) {
	fields, err := configFields(req.Config)
	if err != nil {
		return nil, err
	}
	if raw, ok := present(fields, "on"); ok {
		if next, ok, err := decideOn(raw, fields, req.Context); err != nil || ok {
			return map[string][]string{"next": next}, err
		}
	}
	next := []string{}
	if raw, ok := present(fields, "next"); ok {
		if err := json.Unmarshal(raw, &next); err != nil || next == nil {
			return nil, invalidConfig("config.next: want a list of step names, got %s", clip(raw))
		}
	}
	return map[string][]string{"next": next}, nil
}

// decideOn reads the case config.cases[context[config.on]]; ok is false
// when the value has no case.
func decideOn(on json.RawMessage, fields map[string]json.RawMessage, taskContext json.RawMessage) (next []string, ok bool, err error) {
	var field string
	if err := json.Unmarshal(on, &field); err != nil || field == "" {
		return nil, false, invalidConfig("config.on: want the name of a context field, got %s", clip(on))
	}
	var cases map[string][]string
	if raw, ok := present(fields, "cases"); ok {
		if err := json.Unmarshal(raw, &cases); err != nil {
			return nil, false, invalidConfig("config.cases: want an object of lists of step names, got %s", clip(raw))
		}
	}
	var values map[string]any
	if len(taskContext) > 0 {
		if err := json.Unmarshal(taskContext, &values); err != nil {
			return nil, false, executor.Permanent(fmt.Errorf("context is not a JSON object: %w", err))
		}
	}
	value, present := values[field]
	if !present {
		return nil, false, nil
	}
	key, isString := value.(string)
	if !isString {
		b, _ := json.Marshal(value)
		key = string(b)
	}
	next, ok = cases[key]
	if ok && next == nil {
		next = []string{}
	}
	return next, ok, nil
}
