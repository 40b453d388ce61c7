package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

func TestChildResults(t *testing.T) {
	t.Parallel()
	step := func(name string, st state.State, results string) *store.Step {
		s := &store.Step{Name: name, State: st}
		if results != "" {
			s.Results = json.RawMessage(results)
		}
		return s
	}
	cases := []struct {
		name  string
		steps []*store.Step
		want  string
	}{
		{"every settled step by name", []*store.Step{step("a", state.Complete, `{"x":1}`), step("b", state.Complete, `[1,2]`)}, `{"a":{"x":1},"b":[1,2]}`},
		{"resolved without results is null", []*store.Step{step("a", state.ResolvedManually, "")}, `{"a":null}`},
		{"resolved with results keeps them", []*store.Step{step("a", state.ResolvedManually, `"ok"`)}, `{"a":"ok"}`},
		{"skipped and unfinished steps are left out", []*store.Step{step("a", state.Skipped, ""), step("b", state.Error, `{"partial":true}`), step("c", state.Complete, `3`)}, `{"c":3}`},
		{"no step", nil, `{}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := childResults(tc.steps)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(got))
		})
	}
}

func TestChildKey(t *testing.T) {
	t.Parallel()
	require.Equal(t, "child:p/s/0/1", childKey("p", "s", 0, 1))
	seen := map[string]bool{}
	for gen := range 3 {
		for attempt := 1; attempt <= 3; attempt++ {
			k := childKey("p", "s", gen, attempt)
			require.False(t, seen[k], "a new key for each attempt of each run: %s", k)
			seen[k] = true
		}
	}
}

func TestChildRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want bool
	}{
		{invalidf("context: bad"), true},
		{notFoundf("template x/y is not registered"), true},
		{exhaustedf("context is too big"), true},
		{preconditionf("no"), true},
		{&template.ValidationError{Field: "context.amount", Message: "want a string"}, true},
		{fmt.Errorf("create task: %w", store.ErrUnavailable), false},
		{ErrStopped, false},
		{errors.New("connection reset"), false},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, childRefused(tc.err), "%v", tc.err)
	}
}

func TestChildEnded(t *testing.T) {
	t.Parallel()
	for s, want := range map[state.State]bool{
		state.Pending: false, state.InProgress: false,
		state.Complete: true, state.Error: true, state.Cancelled: true, state.ResolvedManually: true,
	} {
		require.Equal(t, want, childEnded(s), s)
	}
}

// A child is wanted while its parent's step runs the attempt that made it,
// or failed because it failed (an operator may retry it to completion);
// otherwise the reason says what became of the step.
func TestParentGone(t *testing.T) {
	t.Parallel()
	const parent, stepID = "p-1", "s-1"
	key := childKey(parent, stepID, 0, 2)
	step := func(st state.State, attempts int, class string) []*store.Step {
		s := &store.Step{ID: stepID, Name: "call", State: st, Attempts: attempts}
		if class != "" {
			s.Error = &store.StepError{Class: class}
		}
		return []*store.Step{{ID: "s-0", Name: "quote", State: state.Complete}, s}
	}
	for _, tc := range []struct {
		name  string
		steps []*store.Step
		want  string
	}{
		{"waits", step(state.InProgress, 2, ""), ""},
		{"failed with it", step(state.Error, 2, childFailedClass), ""},
		{"a later attempt", step(state.InProgress, 3, ""), "parent task p-1 step call no longer waits for it (attempt 3 runs another child)"},
		{"parent cancelled", step(state.Cancelled, 2, ""), "parent task p-1 step call no longer waits for it (step is cancelled)"},
		{"parent failed", step(state.Error, 2, "TaskFailed"), "parent task p-1 step call no longer waits for it (step is error)"},
		{"failed with an earlier child", step(state.Error, 3, childFailedClass), "parent task p-1 step call no longer waits for it (step is error)"},
		{"parent gone", nil, "parent task p-1 no longer exists"},
	} {
		require.Equal(t, tc.want, parentGone(tc.steps, parent, stepID, key), tc.name)
	}
}
