// Package template defines task templates (a DAG of steps), reads them from
// YAML or JSON, fills in defaults and validates them. It is pure: no I/O.
package template

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by Normalize; they match Tasker's
// min(2^attempts s, 30 s) backoff and retry_limit of 3.
const (
	DefaultRetryLimit        = 3
	DefaultBackoffInitial    = 2 * time.Second
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffMax        = 30 * time.Second
)

// Template is a versioned DAG of steps.
type Template struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
	// ContextSchema is a JSON Schema (as JSON) every task context must meet;
	// nil means any JSON object.
	ContextSchema json.RawMessage `json:"context_schema,omitempty"`
	// Priority is its tasks' default priority, from MinPriority (lowest)
	// to MaxPriority; 0 means DefaultPriority. A task's own, given at
	// creation, wins.
	Priority int `json:"priority,omitempty"`
	// Concurrency bounds how many of the template's tasks run at once per
	// key value; every entry must admit a task for it to start.
	Concurrency []Concurrency `json:"concurrency,omitempty"`
	// Identity is how a task of the template is told apart from a repeat
	// of one: IdentityStrict (the default, also spelt ""), IdentityCallerKey
	// or IdentityUnique.
	Identity string `json:"identity,omitempty"`
	Steps    []Step `json:"steps"`
}

// Identity strategies: what makes two creates of a template the same task.
const (
	// IdentityStrict identifies a task by the caller's idempotency key if
	// it gives one, else by a hash of template and context (Tasker's
	// "hash" strategy), so a repeated request finds the existing task.
	IdentityStrict = "strict"
	// IdentityCallerKey requires the caller's idempotency key: a create
	// without one is refused, so no two callers' tasks are merged by
	// accident of equal contexts.
	IdentityCallerKey = "caller_key"
	// IdentityUnique makes every create without an idempotency key a new
	// task, whatever its context; a key, when given, still dedupes.
	IdentityUnique = "unique"
)

// Concurrency allows at most MaxRunning at once among those whose Key
// evaluates to the same value: tasks of the template at task level, steps
// with the same handler (across templates) at step level.
type Concurrency struct {
	// Key is a CEL expression over the task's context (package expr),
	// e.g. "context.customer_id".
	Key        string `json:"key"`
	MaxRunning int    `json:"max_running"`
	// Strategy says what happens to a task that finds its key full; empty
	// means StrategyQueue. Step-level entries only queue.
	Strategy string `json:"strategy,omitempty"`
}

// Concurrency strategies.
const (
	// StrategyQueue makes the newcomer wait; waiting ones start in
	// priority order, first come within a priority.
	StrategyQueue = "queue"
	// StrategyCancelInProgress cancels the oldest running task with the
	// key so the newcomer can start.
	StrategyCancelInProgress = "cancel_in_progress"
	// StrategyCancelNewest cancels the newcomer.
	StrategyCancelNewest = "cancel_newest"
)

// RateLimitUse is a step's draw on a named rate limit (defined with
// `tasker limit set`): each dispatch takes Units tokens from the limit's
// bucket, or from the bucket of Key's value when Key is set.
type RateLimitUse struct {
	Name string `json:"name"`
	// Units per dispatch; 0 means 1.
	Units int `json:"units,omitempty"`
	// Key, optional, is a CEL expression over the task's context giving
	// each value its own bucket.
	Key string `json:"key,omitempty"`
}

// Task priorities: when executor slots are short, higher ones are
// dispatched first.
const (
	MinPriority     = 1
	MaxPriority     = 4
	DefaultPriority = 2
)

// Step is one node of the DAG.
type Step struct {
	Name      string   `json:"name"`
	Handler   string   `json:"handler"`
	DependsOn []string `json:"depends_on,omitempty"`
	// Config is passed to the handler; a JSON object or nil.
	Config json.RawMessage `json:"config,omitempty"`
	// Retryable defaults to true; a pointer so "false" survives Normalize.
	Retryable *bool `json:"retryable,omitempty"`
	// RetryLimit is the most attempts the step gets (default 3).
	RetryLimit int      `json:"retry_limit,omitempty"`
	Backoff    Backoff  `json:"backoff,omitzero"`
	Timeout    Duration `json:"timeout,omitempty"`
	Skippable  bool     `json:"skippable,omitempty"`
	// Concurrency bounds how many steps with this step's handler run at
	// once per key value, across templates.
	Concurrency []Concurrency  `json:"concurrency,omitempty"`
	RateLimits  []RateLimitUse `json:"rate_limits,omitempty"`
	// WaitFor, when set, makes the step a durable wait for a signal
	// instead of a handler's work: no executor runs it.
	WaitFor *WaitFor `json:"wait_for,omitempty"`
	// Sleep, when positive, makes the step a durable wait of that long
	// from when it became ready; then it completes. No executor runs it.
	Sleep Duration `json:"sleep,omitempty"`
	// Decision marks a step whose result chooses which of its children
	// run: {"next": ["child", ...]}. Children not chosen, and steps
	// reachable only through them, end skipped. It needs a child.
	Decision bool `json:"decision,omitempty"`
	// ForEach, when set, makes the step a map over a list known only at
	// run time: a CEL expression over "results" (the parents' results by
	// step name) and "context" that must evaluate to a list. The step runs
	// as one instance per item, each given its item and retried on its
	// own; it completes with the instances' results as a list, in order.
	ForEach string `json:"for_each,omitempty"`
	// Task, when set, makes the step run a child task instead of a
	// handler: "namespace/name" (the latest version when the step
	// starts) or "namespace/name@version". See ParseTaskRef.
	Task string `json:"task,omitempty"`
	// TaskContext builds the child task's context, field by field: each
	// value is a CEL expression over context (the parent task's) and
	// results (the step's parents', by step name). Without it the child's
	// context is an empty object. Only with Task.
	TaskContext map[string]string `json:"context,omitempty"`
}

// InstanceName is the name of the index-th instance of a for_each step.
func InstanceName(step string, index int) string {
	return step + "[" + strconv.Itoa(index) + "]"
}

// ParseInstanceName splits an instance name ("charge[3]") into its step
// and index; ok is false for any other name. Step names cannot contain
// brackets, so the two never collide.
func ParseInstanceName(name string) (step string, index int, ok bool) {
	open := strings.IndexByte(name, '[')
	if open <= 0 || !strings.HasSuffix(name, "]") {
		return "", 0, false
	}
	digits := name[open+1 : len(name)-1]
	if digits == "" || (len(digits) > 1 && digits[0] == '0') {
		return "", 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return name[:open], n, true
}

// IsChild reports whether the step runs a child task rather than a
// handler.
func (s *Step) IsChild() bool { return s.Task != "" }

// WaitFor is a step that waits for a named signal (SignalTask), whose
// payload becomes its result.
type WaitFor struct {
	Signal string `json:"signal"`
	// Timeout, when positive, fails the wait (under the step's retry
	// policy; a retry waits again) if no signal came within it.
	Timeout Duration `json:"timeout,omitempty"`
}

// IsWait reports whether the step waits (for a signal or a sleep) rather
// than running a handler.
func (s *Step) IsWait() bool { return s.WaitFor != nil || s.Sleep > 0 }

// Backoff is exponential backoff between attempts:
// min(Initial × Multiplier^(attempts−1), Max), with jitter.
type Backoff struct {
	Initial    Duration `json:"initial,omitempty"`
	Multiplier float64  `json:"multiplier,omitempty"`
	Max        Duration `json:"max,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("10ms",
// "1.5s") in YAML and JSON; a bare JSON number is read as seconds.
type Duration time.Duration

// IsRetryable reports the step's effective retryable flag.
func (s *Step) IsRetryable() bool { return s.Retryable == nil || *s.Retryable }
