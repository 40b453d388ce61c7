package state_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
)

// The transition rules exactly as /work/shared/DESIGN.md ("States") writes
// them, plus a step's move to skipped (docs/states.md, decision points). The expected tables are parsed from this text rather than taken from
// the package, so a typo in the package's maps cannot hide itself.
const (
	designTaskTransitions = `pending→{in_progress, cancelled, error}; in_progress→{complete,
error, cancelled, pending}; error→{pending, resolved_manually}; complete→cancelled;
resolved_manually→cancelled.`
	designStepTransitions = `pending→{in_progress, error, cancelled, resolved_manually};
in_progress→{complete, error, cancelled}; error→{pending, resolved_manually};
pending→skipped.`
)

// allStates is spelled out here, independent of state.All.
var allStates = []string{"pending", "in_progress", "complete", "error", "cancelled", "resolved_manually", "skipped"}

// parseDesign turns "a→{b, c}; d→e." into the set of allowed (from, to) pairs.
func parseDesign(t *testing.T, text string) map[[2]string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, s := range allStates {
		known[s] = true
	}
	allowed := map[[2]string]bool{}
	text = strings.TrimSuffix(strings.Join(strings.Fields(text), " "), ".")
	for clause := range strings.SplitSeq(text, ";") {
		from, tos, ok := strings.Cut(strings.TrimSpace(clause), "→")
		require.True(t, ok, "clause %q has no arrow", clause)
		tos = strings.Trim(tos, "{}")
		for to := range strings.SplitSeq(tos, ",") {
			to = strings.TrimSpace(to)
			require.True(t, known[from], "unknown state %q in design text", from)
			require.True(t, known[to], "unknown state %q in design text", to)
			allowed[[2]string{from, to}] = true
		}
	}
	return allowed
}

func TestTransitionsMatchDesign(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind      string
		design    string
		judge     func(from, to state.State) state.Outcome
		wantCount int // allowed pairs counted by hand from the design text
	}{
		{kind: "task", design: designTaskTransitions, judge: state.TaskTransition, wantCount: 11},
		{kind: "step", design: designStepTransitions, judge: state.StepTransition, wantCount: 10},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			allowed := parseDesign(t, tc.design)
			require.Len(t, allowed, tc.wantCount, "design text parsed to the wrong number of transitions")

			var applied, notApplied, refused int
			for _, from := range allStates {
				for _, to := range allStates {
					var want state.Outcome
					switch {
					case from == to:
						want = state.NotApplied
					case allowed[[2]string{from, to}]:
						want = state.Applied
					default:
						want = state.Refused
					}
					t.Run(from+"->"+to, func(t *testing.T) {
						t.Parallel()
						got := tc.judge(state.State(from), state.State(to))
						require.Equal(t, want, got, "%s %s -> %s: want %v, got %v", tc.kind, from, to, want, got)
					})
					switch want {
					case state.Applied:
						applied++
					case state.NotApplied:
						notApplied++
					default:
						refused++
					}
				}
			}
			require.Equal(t, tc.wantCount, applied)
			n := len(allStates)
			require.Equal(t, n, notApplied)
			require.Equal(t, n*n-n-tc.wantCount, refused)
		})
	}
}

func TestTransitionsWithUnknownStatesAreRefused(t *testing.T) {
	t.Parallel()
	cases := []struct{ from, to state.State }{
		{"bogus", "bogus"}, // same state, but not a state: never a silent no-op
		{"", ""},
		{"bogus", state.Pending},
		{state.Pending, "bogus"},
		{"PENDING", state.InProgress},
		{state.Pending, "IN_PROGRESS"},
	}
	for _, tc := range cases {
		require.Equal(t, state.Refused, state.TaskTransition(tc.from, tc.to), "task %q -> %q", tc.from, tc.to)
		require.Equal(t, state.Refused, state.StepTransition(tc.from, tc.to), "step %q -> %q", tc.from, tc.to)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, s := range allStates {
		got, err := state.Parse(s)
		require.NoError(t, err)
		require.Equal(t, state.State(s), got)
		require.True(t, got.Valid())
	}
	for _, bad := range []string{"", "Pending", " pending", "pending ", "done", "in-progress", "resolved"} {
		got, err := state.Parse(bad)
		require.Error(t, err, "input %q", bad)
		require.Empty(t, got)
		require.Contains(t, err.Error(), "unknown state")
		require.Contains(t, err.Error(), "resolved_manually", "the error should list the valid states")
		require.False(t, state.State(bad).Valid())
	}
}

func TestAllIsEveryStateInOrder(t *testing.T) {
	t.Parallel()
	got := make([]string, 0, len(state.All))
	for _, s := range state.All {
		got = append(got, string(s))
	}
	require.Equal(t, allStates, got)
}

func TestTaskStatesAreAllButSkipped(t *testing.T) {
	t.Parallel()
	var want []state.State
	for _, s := range state.All {
		if s != state.Skipped {
			want = append(want, s)
		}
	}
	require.Equal(t, want, state.TaskStates[:])
}

func TestSatisfied(t *testing.T) {
	t.Parallel()
	// Design: "A step may start only when every parent is complete or
	// resolved_manually."
	want := map[string]bool{"complete": true, "resolved_manually": true}
	for _, s := range allStates {
		require.Equal(t, want[s], state.State(s).Satisfied(), "state %s", s)
	}
	require.False(t, state.State("bogus").Satisfied())
}

func TestSettled(t *testing.T) {
	t.Parallel()
	// A task completes when every step is complete, resolved manually or
	// skipped; skipped satisfies no child (TestSatisfied).
	want := map[string]bool{"complete": true, "resolved_manually": true, "skipped": true}
	for _, s := range allStates {
		require.Equal(t, want[s], state.State(s).Settled(), "state %s", s)
	}
	require.False(t, state.State("bogus").Settled())
}

// A task is never skipped; a step is skipped only from pending, and
// nothing leaves skipped.
func TestSkipped(t *testing.T) {
	t.Parallel()
	for _, from := range state.All {
		require.Equal(t, from == state.Skipped, state.TaskTransition(from, state.Skipped) == state.NotApplied, "task %s -> skipped", from)
		if from != state.Skipped {
			require.Equal(t, state.Refused, state.TaskTransition(from, state.Skipped), "task %s -> skipped", from)
			require.Equal(t, state.Refused, state.StepTransition(state.Skipped, from), "step skipped -> %s", from)
		}
		want := state.Refused
		switch from {
		case state.Pending:
			want = state.Applied
		case state.Skipped:
			want = state.NotApplied
		}
		require.Equal(t, want, state.StepTransition(from, state.Skipped), "step %s -> skipped", from)
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "applied", state.Applied.String())
	require.Equal(t, "not applied", state.NotApplied.String())
	require.Equal(t, "refused", state.Refused.String())
	require.Equal(t, state.Refused, state.Outcome(0), "the zero Outcome must be the safe one")
}

func TestTransitionError(t *testing.T) {
	t.Parallel()
	err := error(&state.TransitionError{Kind: "step", Name: "charge", From: state.Complete, To: state.Pending})
	require.Equal(t, "step charge cannot go from complete to pending", err.Error())
}

func TestTerminal(t *testing.T) {
	t.Parallel()
	want := map[state.State]bool{
		state.Pending: false, state.InProgress: false,
		state.Complete: true, state.Error: true, state.Cancelled: true, state.ResolvedManually: true,
		state.Skipped: true,
	}
	require.Len(t, want, len(state.All))
	for _, s := range state.All {
		require.Equal(t, want[s], s.Terminal(), s)
	}
	require.False(t, state.State("finished").Terminal())
}
