package state_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
)

// The rerun moves as docs/states.md writes them, spelled out here rather
// than read from the package.
func TestRerunTables(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind  string
		judge func(state.State) state.Outcome
		want  map[string]state.Outcome
	}{
		{kind: "step", judge: state.StepRerun, want: map[string]state.Outcome{
			"pending":           state.NotApplied,
			"in_progress":       state.Refused,
			"complete":          state.Applied,
			"error":             state.Applied,
			"cancelled":         state.Refused,
			"resolved_manually": state.Applied,
			"skipped":           state.Applied,
		}},
		{kind: "task", judge: state.TaskRerun, want: map[string]state.Outcome{
			"pending":           state.NotApplied,
			"in_progress":       state.NotApplied,
			"complete":          state.Applied,
			"error":             state.Applied,
			"cancelled":         state.Refused,
			"resolved_manually": state.Refused,
			"skipped":           state.Refused, // tasks are never skipped
		}},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			require.Len(t, tc.want, len(allStates))
			for _, from := range allStates {
				require.Equal(t, tc.want[from], tc.judge(state.State(from)), "%s rerun from %s", tc.kind, from)
			}
			for _, bad := range []state.State{"", "bogus", "COMPLETE"} {
				require.Equal(t, state.Refused, tc.judge(bad), "%s rerun from %q", tc.kind, bad)
			}
		})
	}
}

// A rerun's moves stay out of the ordinary tables: the engine on its own
// never takes a finished step or task back to pending.
func TestRerunMovesAreNotOrdinaryTransitions(t *testing.T) {
	t.Parallel()
	for _, from := range []state.State{state.Complete, state.ResolvedManually} {
		require.Equal(t, state.Refused, state.StepTransition(from, state.Pending), "step %s -> pending", from)
	}
	require.Equal(t, state.Refused, state.TaskTransition(state.Complete, state.Pending))
}
