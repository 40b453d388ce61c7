package statepb_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/state/statepb"
)

func TestEveryStateRoundTrips(t *testing.T) {
	t.Parallel()
	want := map[state.State]coordinatorv1.State{
		state.Pending:          coordinatorv1.State_STATE_PENDING,
		state.InProgress:       coordinatorv1.State_STATE_IN_PROGRESS,
		state.Complete:         coordinatorv1.State_STATE_COMPLETE,
		state.Error:            coordinatorv1.State_STATE_ERROR,
		state.Cancelled:        coordinatorv1.State_STATE_CANCELLED,
		state.ResolvedManually: coordinatorv1.State_STATE_RESOLVED_MANUALLY,
		state.Skipped:          coordinatorv1.State_STATE_SKIPPED,
	}
	require.Len(t, want, len(state.All))
	// Every enum value but UNSPECIFIED is one of the states.
	require.Len(t, coordinatorv1.State_name, len(state.All)+1)
	for _, s := range state.All {
		p := statepb.ToProto(s)
		require.Equal(t, want[s], p, s)
		back, ok := statepb.FromProto(p)
		require.True(t, ok, s)
		require.Equal(t, s, back)
		require.Equal(t, string(s), statepb.Name(p))
		parsed, err := statepb.Parse(string(s))
		require.NoError(t, err)
		require.Equal(t, p, parsed)
		require.Equal(t, s.Terminal(), statepb.Terminal(p), s)
		require.Equal(t, s.Satisfied(), statepb.Satisfied(p), s)
		require.Equal(t, s.Settled(), statepb.Settled(p), s)
	}
}

func TestUnspecifiedAndUnknown(t *testing.T) {
	t.Parallel()
	require.Equal(t, coordinatorv1.State_STATE_UNSPECIFIED, statepb.ToProto("finished"))

	_, ok := statepb.FromProto(coordinatorv1.State_STATE_UNSPECIFIED)
	require.False(t, ok)
	require.Empty(t, statepb.Name(coordinatorv1.State_STATE_UNSPECIFIED))

	newer := coordinatorv1.State(42)
	_, ok = statepb.FromProto(newer)
	require.False(t, ok)
	require.Equal(t, "unknown(42)", statepb.Name(newer))
	require.False(t, statepb.Terminal(newer))
	require.False(t, statepb.Satisfied(newer))
	require.False(t, statepb.Settled(newer))

	unspecified, err := statepb.Parse("")
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_UNSPECIFIED, unspecified)
	_, err = statepb.Parse("done")
	require.ErrorContains(t, err, `unknown state "done"`)
}
