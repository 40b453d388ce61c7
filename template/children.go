package template

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/tasker-go/tasker/expr"
)

// TaskRef is what a step's task names: a template, at a version or
// (Version empty) at the latest one when the step starts.
type TaskRef struct {
	Namespace, Name, Version string
}

// String is the reference as a template writes it.
func (r TaskRef) String() string {
	if r.Version == "" {
		return r.Namespace + "/" + r.Name
	}
	return r.Namespace + "/" + r.Name + "@" + r.Version
}

// ParseTaskRef reads "namespace/name" or "namespace/name@version"; the
// error is a *ValidationError naming field "task".
func ParseTaskRef(ref string) (TaskRef, error) {
	fail := func(format string, args ...any) (TaskRef, error) {
		return TaskRef{}, &ValidationError{Field: "task", Message: fmt.Sprintf(format, args...)}
	}
	path, version, versioned := strings.Cut(ref, "@")
	ns, name, ok := strings.Cut(path, "/")
	if !ok {
		return fail("%q: want namespace/name or namespace/name@version", ref)
	}
	if err := checkName("namespace", ns); err != nil {
		return fail("%q: namespace: %s", ref, err.Message)
	}
	if err := checkName("name", name); err != nil {
		return fail("%q: name: %s", ref, err.Message)
	}
	if versioned {
		if _, err := semver.StrictNewVersion(version); err != nil {
			return fail("%q: version %s is not a semantic version (want MAJOR.MINOR.PATCH, or leave out @version for the latest)", ref, strconv.Quote(version))
		}
	}
	return TaskRef{Namespace: ns, Name: name, Version: version}, nil
}

// validateChild checks a step that runs a child task: a valid reference,
// context expressions that compile, and none of a handler's settings.
// The referenced template's existence is the coordinator's to check, at
// registration, since it takes a read of the store.
func validateChild(s *Step) error {
	fail := func(field, format string, args ...any) error {
		return &ValidationError{Step: s.Name, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if !s.IsChild() {
		if len(s.TaskContext) > 0 {
			return fail("context", "builds a child task's context, so it needs task (namespace/name[@version])")
		}
		return nil
	}
	if _, err := ParseTaskRef(s.Task); err != nil {
		err.(*ValidationError).Step = s.Name
		return err
	}
	switch {
	case s.Handler != "":
		return fail("handler", "a step with task runs a child task, not a handler; remove handler %q", s.Handler)
	case s.WaitFor != nil:
		return fail("wait_for", "a step runs a child task (task) or waits for a signal (wait_for), not both")
	case s.Sleep > 0:
		return fail("sleep", "a step runs a child task (task) or sleeps, not both")
	case len(s.Config) > 0:
		return fail("config", "a step with task runs no handler, so it takes no config; build the child's context with context")
	case s.Timeout != 0:
		return fail("timeout", "a step with task runs no handler; a child task has no timeout of its own")
	case len(s.Concurrency) > 0:
		return fail("concurrency", "a step with task holds no executor slot; give the child template its concurrency")
	case len(s.RateLimits) > 0:
		return fail("rate_limits", "a step with task is not dispatched, so it draws on no rate limit")
	case s.Decision:
		return fail("decision", "a step with task completes with its child's results, which choose no branch")
	case s.ForEach != "":
		return fail("for_each", "a step runs one child task; a child task per item (for_each with task) is not supported yet")
	}
	for _, field := range slices.Sorted(maps.Keys(s.TaskContext)) {
		if field == "" {
			return fail("context", "a field name is empty")
		}
		if _, err := expr.CompileValue(s.TaskContext[field]); err != nil {
			return fail("context."+field, "%q does not compile: %s", s.TaskContext[field], err)
		}
		if err := checkResultsNamed(s, "context."+field, s.TaskContext[field]); err != nil {
			return err
		}
	}
	return nil
}
