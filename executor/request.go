package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// HandlerFunc runs one attempt of one step. Its ctx carries the step's
// deadline and is cancelled when the coordinator cancels the attempt or the
// executor shuts down, so handlers doing I/O should pass it on.
//
// The value returned on success becomes the step's results: a
// json.RawMessage is used as is, a []byte is taken as JSON text, nil becomes
// {}, anything else goes through json.Marshal. An error fails the attempt;
// wrap it with Permanent, RetryAfter or WithClass to say more.
type HandlerFunc func(ctx context.Context, req *Request) (any, error)

// Request is everything the coordinator sent for one attempt of one step.
// Raw JSON fields are passed through untouched so handlers decode them into
// their own types.
type Request struct {
	// TaskID identifies the task the step belongs to.
	TaskID string
	// StepID identifies the step; stable across attempts.
	StepID string
	// StepName is the step's name in its template.
	StepName string
	// Handler is the handler name the step asked for.
	Handler string
	// Attempt counts from 1.
	Attempt int
	// Deadline is when the coordinator gives up on the attempt; zero means
	// none. The handler's ctx already carries it.
	Deadline time.Time
	// Config is the step's handler config from its template (a JSON object),
	// or nil when none was sent.
	Config json.RawMessage
	// Context is the task's context (a JSON object), or nil when none was
	// sent.
	Context json.RawMessage
	// ParentResults maps each parent step's name to its results.
	ParentResults map[string]json.RawMessage
	// Namespace of the task's template.
	Namespace string
	// TemplateName is the name of the task's template.
	TemplateName string
	// TemplateVersion is the template version the task was created with.
	TemplateVersion string
	// IdempotencyKey is the same for every attempt of one run of the step
	// and new after an operator reruns it. Pass it to the services the
	// handler calls (a payment API's idempotency key) so a retry does not
	// repeat what an earlier attempt of the run already did, while a
	// deliberate rerun does. Treat it as opaque; it is empty when the
	// coordinator is older than the field.
	IdempotencyKey string
	// Item is set when the step is an instance of a for_each step: the
	// list element it runs on, its index and the list's length.
	Item *Item

	// progress sends a StepProgress for this attempt; nil when the request
	// was built outside an executor (e.g. a handler unit test).
	progress func(*executorv1.StepProgress)
	// traceContext is the coordinator's W3C trace context for the attempt.
	traceContext map[string]string
}

// Progress tells the coordinator how far a long step has come, so people
// watching it see movement. It is best effort: it never blocks, and the
// update is dropped when the stream that sent the step is gone or backed up.
// percent is clamped to 0..100.
func (r *Request) Progress(percent float64, message string) {
	if r == nil || r.progress == nil {
		return
	}
	if math.IsNaN(percent) {
		percent = 0
	}
	r.progress(&executorv1.StepProgress{
		TaskId:  r.TaskID,
		StepId:  r.StepID,
		Attempt: int32(r.Attempt),
		Message: message,
		Percent: min(max(percent, 0), 100),
	})
}

// Item is the list element a for_each instance runs on.
type Item struct {
	// Index is the element's position in the list, from 0.
	Index int
	// Count is the list's length.
	Count int
	// Value is the element as JSON.
	Value json.RawMessage
}

// newRequest converts the wire message; bytes are copied by reference since
// the proto message is not reused after this.
func newRequest(step *executorv1.ExecuteStep) *Request {
	req := &Request{
		TaskID:          step.GetTaskId(),
		StepID:          step.GetStepId(),
		StepName:        step.GetStepName(),
		Handler:         step.GetHandler(),
		Attempt:         int(step.GetAttempt()),
		Config:          rawOrNil(step.GetHandlerConfig()),
		Context:         rawOrNil(step.GetContext()),
		Namespace:       step.GetNamespace(),
		TemplateName:    step.GetTemplateName(),
		TemplateVersion: step.GetTemplateVersion(),
		IdempotencyKey:  step.GetIdempotencyKey(),
		traceContext:    step.GetTraceContext(),
	}
	if step.GetDeadline() != nil {
		req.Deadline = step.GetDeadline().AsTime()
	}
	if fe := step.GetForEach(); fe != nil {
		req.Item = &Item{Index: int(fe.GetIndex()), Count: int(fe.GetCount()), Value: rawOrNil(fe.GetItem())}
	}
	if len(step.GetParentResults()) > 0 {
		req.ParentResults = make(map[string]json.RawMessage, len(step.GetParentResults()))
		for name, res := range step.GetParentResults() {
			req.ParentResults[name] = rawOrNil(res)
		}
	}
	return req
}

func rawOrNil(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

// errNotJSON is wrapped when a handler returns bytes that are not JSON.
var errNotJSON = errors.New("not valid JSON")

// encodeResults applies the HandlerFunc result rules.
func encodeResults(v any) ([]byte, error) {
	var b []byte
	switch r := v.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		b = r
	case []byte:
		b = r
	default:
		enc, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode results as JSON: %w", err)
		}
		return enc, nil
	}
	if len(b) == 0 {
		return []byte("{}"), nil
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("results: %w", errNotJSON)
	}
	return b, nil
}
