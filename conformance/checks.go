package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// The well-known test handlers every executor under test hosts; their
// behaviour is fixed by docs/conformance.md.
const (
	HandlerEcho  = "conformance.echo"
	HandlerSleep = "conformance.sleep"
	HandlerFail  = "conformance.fail"
)

// ProtocolVersion is the protocol version the kit checks.
const ProtocolVersion = 1

// Error classes the protocol fixes, as the kit expects them.
const (
	classUnknownHandler   = "UnknownHandler"
	classOverCapacity     = "ExecutorOverCapacity"
	classDeadlineExceeded = "DeadlineExceeded"
	classCancelled        = "Cancelled"
	classShuttingDown     = "ShuttingDown"
)

// This file holds the kit's pure checks: functions of what was sent and
// what came back, with no I/O, so they are table-tested on their own.

// checkDescribe lists what is wrong with a Describe answer; handlers are
// the names it must list.
func checkDescribe(d *executorv1.DescribeResponse, handlers []string) []string {
	var problems []string
	if d.GetExecutorId() == "" {
		problems = append(problems, "executor_id is empty; it must be stable and non-empty (results carry it)")
	}
	if d.GetCapacity() < 1 {
		problems = append(problems, fmt.Sprintf("capacity is %d; it must be at least 1", d.GetCapacity()))
	}
	if d.GetLanguage() == "" {
		problems = append(problems, "language is empty; say e.g. \"go\", \"node\", \"python\"")
	}
	if d.GetProtocolVersion() != ProtocolVersion {
		problems = append(problems, fmt.Sprintf("protocol_version is %d; this kit checks version %d", d.GetProtocolVersion(), ProtocolVersion))
	}
	var missing []string
	for _, h := range handlers {
		if !slices.Contains(d.GetHandlers(), h) {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("handlers does not list %s (start the executor with its conformance handlers registered, e.g. --conformance)", strings.Join(missing, ", ")))
	}
	seen := map[string]bool{}
	for _, h := range d.GetHandlers() {
		if h == "" {
			problems = append(problems, "handlers lists an empty name")
		} else if seen[h] {
			problems = append(problems, fmt.Sprintf("handlers lists %q twice", h))
		}
		seen[h] = true
	}
	return problems
}

// checkIdentity lists how res fails to echo step's task, step and attempt
// and the executor's id.
func checkIdentity(step *executorv1.ExecuteStep, res *executorv1.StepResult, executorID string) []string {
	var problems []string
	if res.GetTaskId() != step.GetTaskId() {
		problems = append(problems, fmt.Sprintf("result task_id is %q, want %q", res.GetTaskId(), step.GetTaskId()))
	}
	if res.GetStepId() != step.GetStepId() {
		problems = append(problems, fmt.Sprintf("result step_id is %q, want %q", res.GetStepId(), step.GetStepId()))
	}
	if res.GetAttempt() != step.GetAttempt() {
		problems = append(problems, fmt.Sprintf("result attempt is %d, want %d (the attempt must be echoed)", res.GetAttempt(), step.GetAttempt()))
	}
	if res.GetExecutorId() != executorID {
		problems = append(problems, fmt.Sprintf("result executor_id is %q, want Describe's %q", res.GetExecutorId(), executorID))
	}
	return problems
}

// wantFailure is what a failed result must carry. Empty strings and nil
// pointers are not checked.
type wantFailure struct {
	class     string
	message   string
	permanent *bool
	// backoff, when set, must match to the millisecond; noBackoff demands
	// none.
	backoff   *time.Duration
	noBackoff bool
}

func ptr[T any](v T) *T { return &v }

// checkFailure lists how res differs from the failure wanted.
func checkFailure(res *executorv1.StepResult, want wantFailure) []string {
	f := res.GetFailure()
	if f == nil {
		return []string{fmt.Sprintf("want a failure (%s), got %s", want.class, summarize(res))}
	}
	var problems []string
	// The class is compared without case: the protocol's classes are
	// CamelCase, but a lower-case spelling is the same class to people.
	if want.class != "" && !strings.EqualFold(f.GetErrorClass(), want.class) {
		problems = append(problems, fmt.Sprintf("error_class is %q, want %q", f.GetErrorClass(), want.class))
	}
	if want.message != "" && f.GetMessage() != want.message {
		problems = append(problems, fmt.Sprintf("message is %q, want %q", f.GetMessage(), want.message))
	}
	if want.permanent != nil && f.GetPermanent() != *want.permanent {
		problems = append(problems, fmt.Sprintf("permanent is %t, want %t", f.GetPermanent(), *want.permanent))
	}
	if want.backoff != nil {
		switch {
		case f.GetBackoff() == nil:
			problems = append(problems, fmt.Sprintf("backoff is unset, want %s", *want.backoff))
		case f.GetBackoff().AsDuration().Round(time.Millisecond) != *want.backoff:
			problems = append(problems, fmt.Sprintf("backoff is %s, want %s", f.GetBackoff().AsDuration(), *want.backoff))
		}
	}
	if want.noBackoff && f.GetBackoff() != nil && f.GetBackoff().AsDuration() != 0 {
		problems = append(problems, fmt.Sprintf("backoff is %s, want none", f.GetBackoff().AsDuration()))
	}
	if f.GetMessage() == "" {
		problems = append(problems, "message is empty; it is shown to people")
	}
	return problems
}

// summarize renders a result in one short phrase.
func summarize(res *executorv1.StepResult) string {
	if res == nil {
		return "no result"
	}
	switch o := res.GetOutcome().(type) {
	case *executorv1.StepResult_Success:
		b := o.Success.GetResults()
		if len(b) > 120 {
			return fmt.Sprintf("success (%d bytes of results)", len(b))
		}
		return "success " + string(b)
	case *executorv1.StepResult_Failure:
		f := o.Failure
		kind := "retryable"
		if f.GetPermanent() {
			kind = "permanent"
		}
		s := fmt.Sprintf("failure %s (%s", f.GetErrorClass(), kind)
		if f.GetBackoff() != nil {
			s += ", backoff " + f.GetBackoff().AsDuration().String()
		}
		return s + "): " + clip(f.GetMessage(), 120)
	default:
		return "a result with neither success nor failure"
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// resultsFor returns every result for step's attempt in msgs.
func resultsFor(msgs []received, step *executorv1.ExecuteStep) []*executorv1.StepResult {
	var out []*executorv1.StepResult
	for _, m := range msgs {
		if r := m.msg.GetStepResult(); r != nil && r.GetStepId() == step.GetStepId() && r.GetAttempt() == step.GetAttempt() {
			out = append(out, r)
		}
	}
	return out
}

// strayAttempts returns the attempts of results in msgs that name step's
// step id but not its attempt: the sign of an executor that does not echo
// the attempt.
func strayAttempts(msgs []received, step *executorv1.ExecuteStep) []int32 {
	var out []int32
	for _, m := range msgs {
		if r := m.msg.GetStepResult(); r != nil && r.GetStepId() == step.GetStepId() && r.GetAttempt() != step.GetAttempt() {
			out = append(out, r.GetAttempt())
		}
	}
	return out
}

// missingResult explains a result that never came for step.
func missingResult(msgs []received, step *executorv1.ExecuteStep, waited time.Duration) string {
	msg := fmt.Sprintf("no result for %s attempt %d within %s", step.GetHandler(), step.GetAttempt(), waited)
	if stray := strayAttempts(msgs, step); len(stray) > 0 {
		msg += fmt.Sprintf("; results for the same step came with attempt %v: the attempt must be echoed", stray)
	}
	return msg
}

// countProblem says what is wrong with n results for one attempt on a
// stream that has ended, where exactly one is due.
func countProblem(step *executorv1.ExecuteStep, n int) string {
	switch {
	case n == 1:
		return ""
	case n == 0:
		return fmt.Sprintf("%s attempt %d got no result on its stream; every ExecuteStep gets exactly one", step.GetHandler(), step.GetAttempt())
	default:
		return fmt.Sprintf("%s attempt %d got %d results on its stream; every ExecuteStep gets exactly one", step.GetHandler(), step.GetAttempt(), n)
	}
}

// jsonEqual reports whether a and b hold the same JSON value (object key
// order and white space aside).
func jsonEqual(a, b []byte) bool {
	va, errA := decodeJSON(a)
	vb, errB := decodeJSON(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// echoBody is conformance.echo's result as the contract fixes it.
type echoBody struct {
	TaskID          *string                    `json:"task_id"`
	StepID          *string                    `json:"step_id"`
	StepName        *string                    `json:"step_name"`
	Handler         *string                    `json:"handler"`
	Attempt         *json.Number               `json:"attempt"`
	IdempotencyKey  *string                    `json:"idempotency_key"`
	Namespace       *string                    `json:"namespace"`
	TemplateName    *string                    `json:"template_name"`
	TemplateVersion *string                    `json:"template_version"`
	Context         json.RawMessage            `json:"context"`
	Config          json.RawMessage            `json:"config"`
	ParentResults   map[string]json.RawMessage `json:"parent_results"`
	TraceContext    map[string]string          `json:"trace_context"`
	Pad             *string                    `json:"pad"`
}

// parseEcho decodes conformance.echo's results.
func parseEcho(results []byte) (*echoBody, error) {
	dec := json.NewDecoder(bytes.NewReader(results))
	dec.UseNumber()
	var body echoBody
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("conformance.echo results are not the contract's JSON object: %w", err)
	}
	return &body, nil
}

// checkEcho lists how conformance.echo's results differ from what step
// carried: every field the contract names, the JSON values compared as
// values (an SDK may re-encode them).
func checkEcho(step *executorv1.ExecuteStep, body *echoBody) []string {
	var problems []string
	str := func(field string, got *string, want string) {
		switch {
		case got == nil:
			problems = append(problems, fmt.Sprintf("echo lacks %s (want %q)", field, want))
		case *got != want:
			problems = append(problems, fmt.Sprintf("echo %s is %q, want %q", field, *got, want))
		}
	}
	str("task_id", body.TaskID, step.GetTaskId())
	str("step_id", body.StepID, step.GetStepId())
	str("step_name", body.StepName, step.GetStepName())
	str("handler", body.Handler, step.GetHandler())
	str("idempotency_key", body.IdempotencyKey, step.GetIdempotencyKey())
	str("namespace", body.Namespace, step.GetNamespace())
	str("template_name", body.TemplateName, step.GetTemplateName())
	str("template_version", body.TemplateVersion, step.GetTemplateVersion())
	if body.Attempt == nil || body.Attempt.String() != fmt.Sprint(step.GetAttempt()) {
		got := "nothing"
		if body.Attempt != nil {
			got = body.Attempt.String()
		}
		problems = append(problems, fmt.Sprintf("echo attempt is %s, want %d (the handler must see the attempt sent)", got, step.GetAttempt()))
	}
	raw := func(field string, got json.RawMessage, want []byte) {
		if len(want) == 0 {
			return
		}
		if !jsonEqual(got, want) {
			problems = append(problems, fmt.Sprintf("echo %s is %s, want %s (JSON bytes must reach the handler untouched)", field, clip(string(got), 80), clip(string(want), 80)))
		}
	}
	raw("context", body.Context, step.GetContext())
	raw("config", body.Config, step.GetHandlerConfig())
	names := slices.Sorted(maps.Keys(step.GetParentResults()))
	gotNames := slices.Sorted(maps.Keys(body.ParentResults))
	if !slices.Equal(names, gotNames) {
		problems = append(problems, fmt.Sprintf("echo parent_results names %v, want %v", gotNames, names))
	}
	for _, name := range names {
		if got, ok := body.ParentResults[name]; ok {
			raw("parent_results["+name+"]", got, step.GetParentResults()[name])
		}
	}
	return problems
}

// traceparentRE is a W3C traceparent: version, trace id, parent id, flags.
var traceparentRE = regexp.MustCompile(`^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

// traceID returns the trace id of a valid traceparent.
func traceID(traceparent string) (string, bool) {
	m := traceparentRE.FindStringSubmatch(traceparent)
	if m == nil || m[1] == "ff" || m[2] == strings.Repeat("0", 32) || m[3] == strings.Repeat("0", 16) {
		return "", false
	}
	return m[2], true
}

// checkTrace lists how the trace context the handler saw fails to continue
// the one sent: the trace id must be the same (the span id may be a child
// span's).
func checkTrace(sent map[string]string, seen map[string]string) []string {
	want, _ := traceID(sent["traceparent"])
	got, ok := seen["traceparent"]
	if !ok {
		return []string{fmt.Sprintf("the handler saw no traceparent (echo trace_context is %v); hand the step's trace_context to handlers", seen)}
	}
	id, valid := traceID(got)
	if !valid {
		return []string{fmt.Sprintf("the handler saw traceparent %q, not a valid W3C traceparent", got)}
	}
	if id != want {
		return []string{fmt.Sprintf("the handler's trace id is %s, want %s: its spans would not join the task's trace", id, want)}
	}
	return nil
}

// interval is when one attempt ran, by the executor's clock.
type interval struct {
	start, end int64
}

// maxConcurrent is the most intervals that overlap at one instant. An
// interval ending at the instant another starts does not overlap it.
func maxConcurrent(ivs []interval) int {
	type edge struct {
		at    int64
		delta int
	}
	edges := make([]edge, 0, 2*len(ivs))
	for _, iv := range ivs {
		edges = append(edges, edge{iv.start, +1}, edge{iv.end, -1})
	}
	// Ends before starts at the same instant.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// sleepSpan decodes conformance.sleep's results.
func sleepSpan(results []byte) (interval, error) {
	var body struct {
		Started *int64 `json:"started_unix_nano"`
		Ended   *int64 `json:"ended_unix_nano"`
	}
	if err := json.Unmarshal(results, &body); err != nil {
		return interval{}, fmt.Errorf("conformance.sleep results are not the contract's JSON object: %w", err)
	}
	if body.Started == nil || body.Ended == nil {
		return interval{}, fmt.Errorf("conformance.sleep results lack started_unix_nano or ended_unix_nano: %s", clip(string(results), 120))
	}
	if *body.Ended < *body.Started {
		return interval{}, fmt.Errorf("conformance.sleep ended (%d) before it started (%d)", *body.Ended, *body.Started)
	}
	return interval{start: *body.Started, end: *body.Ended}, nil
}

// checkHeartbeat lists what is inconsistent inside one heartbeat: every
// running attempt's step is in running_step_ids and the share is within
// the capacity.
func checkHeartbeat(hb *executorv1.Heartbeat, capacity int32) []string {
	var problems []string
	for _, r := range hb.GetRunning() {
		if !slices.Contains(hb.GetRunningStepIds(), r.GetStepId()) {
			problems = append(problems, fmt.Sprintf("heartbeat lists attempt %d of step %s in running but not the step in running_step_ids", r.GetAttempt(), r.GetStepId()))
		}
	}
	if hb.GetCapacity() < 0 || (capacity > 0 && hb.GetCapacity() > capacity) {
		problems = append(problems, fmt.Sprintf("heartbeat capacity share is %d; want 0 (all) or 1..%d (Describe's capacity)", hb.GetCapacity(), capacity))
	}
	return problems
}

// lists reports whether hb lists step's attempt as running.
func lists(hb *executorv1.Heartbeat, step *executorv1.ExecuteStep) bool {
	return slices.ContainsFunc(hb.GetRunning(), func(r *executorv1.RunningStep) bool {
		return r.GetStepId() == step.GetStepId() && r.GetAttempt() == step.GetAttempt() && r.GetTaskId() == step.GetTaskId()
	})
}

// maxGap is the longest time between consecutive instants, and from the
// last one to until.
func maxGap(times []time.Time, until time.Time) time.Duration {
	var most time.Duration
	for i := 1; i < len(times); i++ {
		most = max(most, times[i].Sub(times[i-1]))
	}
	if len(times) > 0 {
		most = max(most, until.Sub(times[len(times)-1]))
	}
	return most
}
