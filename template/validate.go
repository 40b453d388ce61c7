package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/tasker-go/tasker/expr"
)

// DefaultMaxSteps is the step limit when Limits.MaxSteps is zero.
const DefaultMaxSteps = 10000

// MaxRetryLimit caps retry_limit: beyond it a "retry" policy is really an
// infinite loop, which is better expressed by fixing the handler.
const MaxRetryLimit = 100

// Limits are the operator-configurable bounds a template must stay within.
type Limits struct {
	// MaxSteps bounds the DAG size; it trades expressiveness for bounded
	// registration and discovery cost. 0 means DefaultMaxSteps.
	MaxSteps int
}

// ValidationError names what is wrong with a template or a task context,
// precisely enough for a person to fix it: the step (if any), the field and
// what is wrong with it. The gRPC layer maps it to InvalidArgument.
type ValidationError struct {
	// Field is the offending field: "version", "depends_on",
	// "backoff.initial", "context.order_id"; for a step without a name,
	// "steps[2].name".
	Field string
	// Step is the offending step's name, empty for template-level fields.
	Step    string
	Message string
}

// Error reads `step "charge": depends_on: unknown step "x"`, or
// `version: ...` for template-level fields and task contexts.
func (e *ValidationError) Error() string {
	if e.Step != "" {
		return fmt.Sprintf("step %q: %s: %s", e.Step, e.Field, e.Message)
	}
	return e.Field + ": " + e.Message
}

// Validate reports the first problem with t, checking template fields, then
// each step in order, then the graph as a whole, so the same template always
// gets the same message. It judges t as Normalize would leave it, without
// changing t. The error is a *ValidationError.
func Validate(t *Template, lim Limits) error {
	if t == nil {
		return &ValidationError{Field: "template", Message: "missing"}
	}
	c := normalizedCopy(t)
	if err := validateHeader(c); err != nil {
		return err
	}
	maxSteps := lim.MaxSteps
	if maxSteps <= 0 {
		maxSteps = DefaultMaxSteps
	}
	switch {
	case len(c.Steps) == 0:
		return &ValidationError{Field: "steps", Message: "a template needs at least one step"}
	case len(c.Steps) > maxSteps:
		return &ValidationError{Field: "steps", Message: fmt.Sprintf("%d steps exceed the limit of %d", len(c.Steps), maxSteps)}
	}
	idx := c.StepIndex()
	for i := range c.Steps {
		if err := validateStep(c, i, idx); err != nil {
			return err
		}
	}
	if cycle := findCycle(c.Steps, c.parentIndexes(idx)); cycle != nil {
		return &ValidationError{Step: c.Steps[cycle[0]].Name, Field: "depends_on", Message: formatCycle(c.Steps, cycle)}
	}
	return validateDecisions(c)
}

// validateDecisions refuses a decision step with no child: it would have
// nothing to choose, and any "next" it returned would fail it.
func validateDecisions(t *Template) error {
	var children map[string][]string
	for i := range t.Steps {
		s := &t.Steps[i]
		if !s.Decision {
			continue
		}
		if children == nil {
			children = t.Children()
		}
		if len(children[s.Name]) == 0 {
			return &ValidationError{Step: s.Name, Field: "decision", Message: "a decision step needs at least one child (a step that depends_on it) to choose from"}
		}
	}
	return nil
}

func validateHeader(t *Template) error {
	if err := checkName("namespace", t.Namespace); err != nil {
		return err
	}
	if err := checkName("name", t.Name); err != nil {
		return err
	}
	if t.Version == "" {
		return &ValidationError{Field: "version", Message: "required (want MAJOR.MINOR.PATCH, e.g. 1.0.0)"}
	}
	if _, err := semver.StrictNewVersion(t.Version); err != nil {
		return &ValidationError{Field: "version", Message: strconv.Quote(t.Version) + " is not a semantic version (want MAJOR.MINOR.PATCH)"}
	}
	if _, err := CompileContextSchema(t.ContextSchema); err != nil {
		return err
	}
	switch t.Identity {
	case "", IdentityCallerKey, IdentityUnique:
	default:
		return &ValidationError{Field: "identity", Message: fmt.Sprintf("unknown strategy %q (want %s, %s or %s)", t.Identity, IdentityStrict, IdentityCallerKey, IdentityUnique)}
	}
	if t.Priority != 0 && (t.Priority < MinPriority || t.Priority > MaxPriority) {
		return &ValidationError{Field: "priority", Message: fmt.Sprintf("%d is out of range (want %d to %d, higher runs first)", t.Priority, MinPriority, MaxPriority)}
	}
	return validateConcurrency("", "concurrency", t.Concurrency, false)
}

// MaxCount bounds max_running and rate-limit units: far above any real
// use, and inside the API's int32.
const MaxCount = 1_000_000_000

// validateConcurrency checks one concurrency list; step names the step
// for step-level lists, which may only queue (a step cannot be cancelled
// in favour of another without cancelling its task).
func validateConcurrency(step, field string, cs []Concurrency, stepLevel bool) error {
	seen := make(map[string]int, len(cs))
	for i, c := range cs {
		fail := func(sub, format string, args ...any) error {
			return &ValidationError{Step: step, Field: fmt.Sprintf("%s[%d].%s", field, i, sub), Message: fmt.Sprintf(format, args...)}
		}
		if err := checkKey(c.Key); err != nil {
			return fail("key", "%s", err)
		}
		if first, ok := seen[c.Key]; ok {
			return fail("key", "%q is listed twice (%s[%d] and %s[%d]); merge them", c.Key, field, first, field, i)
		}
		seen[c.Key] = i
		if c.MaxRunning < 1 || c.MaxRunning > MaxCount {
			return fail("max_running", "%d is out of range (want 1 to %d)", c.MaxRunning, MaxCount)
		}
		switch c.Strategy {
		case StrategyQueue:
		case StrategyCancelInProgress, StrategyCancelNewest:
			if stepLevel {
				return fail("strategy", "%q is for task-level concurrency; a step's concurrency can only queue", c.Strategy)
			}
		default:
			return fail("strategy", "unknown strategy %q (want %s, %s or %s)", c.Strategy, StrategyQueue, StrategyCancelInProgress, StrategyCancelNewest)
		}
	}
	return nil
}

// checkKey compiles a key expression; the message is what is wrong.
func checkKey(src string) error {
	if src == "" {
		return errors.New("required: a CEL expression over the task context, e.g. context.customer_id")
	}
	if _, err := expr.Compile(src); err != nil {
		return fmt.Errorf("%q does not compile: %w", src, err)
	}
	return nil
}

func validateRateLimits(step string, uses []RateLimitUse) error {
	type use struct{ name, key string }
	seen := make(map[use]int, len(uses))
	for i, u := range uses {
		field := func(sub string) string { return fmt.Sprintf("rate_limits[%d].%s", i, sub) }
		fail := func(sub, format string, args ...any) error {
			return &ValidationError{Step: step, Field: field(sub), Message: fmt.Sprintf(format, args...)}
		}
		if err := checkName(field("name"), u.Name); err != nil {
			err.Step = step
			return err
		}
		if u.Units < 1 || u.Units > MaxCount {
			return fail("units", "%d is out of range (want 1 to %d)", u.Units, MaxCount)
		}
		if u.Key != "" {
			if err := checkKey(u.Key); err != nil {
				return fail("key", "%s", err)
			}
		}
		if first, ok := seen[use{u.Name, u.Key}]; ok {
			return fail("name", "rate limit %q with this key is listed twice (rate_limits[%d] and rate_limits[%d]); add up the units instead", u.Name, first, i)
		}
		seen[use{u.Name, u.Key}] = i
	}
	return nil
}

// CheckName reports whether v is a valid name (of a template, namespace,
// step or rate limit): not empty, only letters, digits, '_', '.' and '-'.
// The error is a *ValidationError naming field.
func CheckName(field, v string) error {
	if err := checkName(field, v); err != nil {
		return err
	}
	return nil
}

// checkName enforces the charset of names that appear in the CLI's
// "namespace/name@version" and in step references, where '/', '@', spaces
// and the like would be ambiguous.
func checkName(field, v string) *ValidationError {
	if v == "" {
		return &ValidationError{Field: field, Message: "required"}
	}
	for _, r := range v {
		if !isNameRune(r) {
			return &ValidationError{Field: field, Message: fmt.Sprintf("%q contains %q; use only letters, digits, '_', '.' and '-'", v, r)}
		}
	}
	return nil
}

func isNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-'
}

func validateStep(t *Template, i int, idx map[string]int) error {
	s := &t.Steps[i]
	if err := checkName("name", s.Name); err != nil {
		err.Field = fmt.Sprintf("steps[%d].name", i)
		return err
	}
	fail := func(field, format string, args ...any) error {
		return &ValidationError{Step: s.Name, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if first := idx[s.Name]; first != i {
		return fail("name", "duplicate step name (steps[%d] and steps[%d])", first, i)
	}
	if err := validateWait(s); err != nil {
		return err
	}
	if err := validateChild(s); err != nil { // child tasks (children.go)
		return err
	}
	if s.Handler == "" && !s.IsWait() && !s.IsChild() {
		return fail("handler", "required: the name of a handler an executor registers")
	}
	if err := validateForEach(s); err != nil {
		return err
	}
	seen := make(map[string]bool, len(s.DependsOn))
	for _, dep := range s.DependsOn {
		switch {
		case dep == s.Name:
			return fail("depends_on", "a step cannot depend on itself")
		case seen[dep]:
			return fail("depends_on", "%q is listed twice", dep)
		}
		if _, ok := idx[dep]; !ok {
			return fail("depends_on", "unknown step %q", dep)
		}
		seen[dep] = true
	}
	if s.RetryLimit < 1 || s.RetryLimit > MaxRetryLimit {
		return fail("retry_limit", "%d is out of range (want 1 to %d)", s.RetryLimit, MaxRetryLimit)
	}
	b := s.Backoff
	switch {
	case b.Initial <= 0:
		return fail("backoff.initial", "%s must be positive", b.Initial)
	case math.IsNaN(b.Multiplier) || math.IsInf(b.Multiplier, 0) || b.Multiplier < 1:
		return fail("backoff.multiplier", "%v must be a finite number of at least 1", b.Multiplier)
	case b.Max < b.Initial:
		return fail("backoff.max", "%s is less than backoff.initial %s", b.Max, b.Initial)
	}
	if s.Timeout < 0 {
		return fail("timeout", "%s must not be negative", s.Timeout)
	}
	if len(s.Config) > 0 && !isJSONObject(s.Config) {
		return fail("config", "must be a JSON object")
	}
	if err := validateConcurrency(s.Name, "concurrency", s.Concurrency, true); err != nil {
		return err
	}
	return validateRateLimits(s.Name, s.RateLimits)
}

func isJSONObject(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil
}

// validateForEach checks a for_each step: its expression compiles, and it
// runs a handler per item, so it is neither a wait nor a decision (whose
// one result chooses branches).
func validateForEach(s *Step) error {
	if s.ForEach == "" {
		return nil
	}
	fail := func(field, format string, args ...any) error {
		return &ValidationError{Step: s.Name, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case s.IsWait():
		return fail("for_each", "a waiting step (wait_for or sleep) cannot run for each item; put the wait before or after it")
	case s.Decision:
		return fail("for_each", "a decision step cannot run for each item: one result chooses its branches")
	}
	if _, err := expr.CompileList(s.ForEach); err != nil {
		return fail("for_each", "%v", err)
	}
	return checkResultsNamed(s, "for_each", s.ForEach)
}

// checkResultsNamed refuses an expression of step s that reads the results
// of a step that is not one of its parents: it would have none to read,
// and would fail every time at run time.
func checkResultsNamed(s *Step, field, src string) error {
	names, err := expr.ResultsNamed(src)
	if err != nil {
		return nil // compiling it reported the problem already
	}
	for _, name := range names {
		if !slices.Contains(s.DependsOn, name) {
			return &ValidationError{Step: s.Name, Field: field, Message: fmt.Sprintf(
				"reads results.%s, but %q is not a parent of this step: add it to depends_on (parents: %s)",
				name, name, strings.Join(s.DependsOn, ", "))}
		}
	}
	return nil
}

// validateWait checks a waiting step (wait_for or sleep): it runs no
// handler, so it takes none of a handler's settings.
func validateWait(s *Step) error {
	fail := func(field, format string, args ...any) error {
		return &ValidationError{Step: s.Name, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if s.Sleep < 0 {
		return fail("sleep", "%s must not be negative", s.Sleep)
	}
	if !s.IsWait() {
		return nil
	}
	if s.WaitFor != nil && s.Sleep > 0 {
		return fail("sleep", "a step waits for a signal (wait_for) or sleeps, not both")
	}
	if s.Until != "" {
		if s.WaitFor != nil || s.Sleep > 0 {
			return fail("until", "a step waits until a time, for a signal (wait_for) or for a while (sleep): one of them")
		}
		if _, err := expr.CompileValue(s.Until); err != nil {
			return fail("until", "%v", err)
		}
		if err := checkResultsNamed(s, "until", s.Until); err != nil {
			return err
		}
	}
	if s.WaitFor != nil {
		if err := checkName("wait_for.signal", s.WaitFor.Signal); err != nil {
			err.Step = s.Name
			return err
		}
		if s.WaitFor.Timeout < 0 {
			return fail("wait_for.timeout", "%s must not be negative", s.WaitFor.Timeout)
		}
	}
	kind := "sleep"
	switch {
	case s.WaitFor != nil:
		kind = "wait_for"
	case s.Until != "":
		kind = "until"
	}
	switch {
	case s.Handler != "":
		return fail("handler", "a %s step runs no handler; remove handler %q", kind, s.Handler)
	case len(s.Config) > 0:
		return fail("config", "a %s step runs no handler, so it takes no config", kind)
	case s.Timeout != 0:
		return fail("timeout", "a %s step runs no handler; give a wait its timeout in wait_for.timeout", kind)
	case len(s.Concurrency) > 0:
		return fail("concurrency", "a %s step holds no executor slot, so it takes no concurrency", kind)
	case len(s.RateLimits) > 0:
		return fail("rate_limits", "a %s step is not dispatched, so it draws on no rate limit", kind)
	}
	return nil
}
