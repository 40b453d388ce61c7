package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

func TestDispatchOverheads(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) *timestamppb.Timestamp {
		return timestamppb.New(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	tr := func(to coordinatorv1.State, ms int) *coordinatorv1.Transition {
		return &coordinatorv1.Transition{ToState: to, At: at(ms)}
	}
	const (
		pending  = coordinatorv1.State_STATE_PENDING
		running  = coordinatorv1.State_STATE_IN_PROGRESS
		complete = coordinatorv1.State_STATE_COMPLETE
		failed   = coordinatorv1.State_STATE_ERROR
	)
	task := &coordinatorv1.Task{Steps: []*coordinatorv1.Step{
		{Id: "a", Name: "a", Attempts: 1, Transitions: []*coordinatorv1.Transition{tr(pending, 0), tr(running, 1), tr(complete, 10)}},
		// b failed once and completed on its second attempt.
		{Id: "b", Name: "b", Attempts: 2, Transitions: []*coordinatorv1.Transition{
			tr(pending, 0), tr(running, 1), tr(failed, 5), tr(pending, 6), tr(running, 7), tr(complete, 20),
		}},
		{Id: "c", Name: "c", DependsOn: []string{"a", "b"}, Attempts: 1},
		{Id: "d", Name: "d", DependsOn: []string{"c"}, Attempts: 2},
		// e was never received by a handler (e.g. resolved by hand).
		{Id: "e", Name: "e", DependsOn: []string{"a"}, Attempts: 1},
		// f never ran.
		{Id: "f", Name: "f", DependsOn: []string{"a"}},
	}}
	received := map[attemptKey]time.Time{
		{"a", 1}: t0.Add(1 * time.Millisecond),
		{"b", 2}: t0.Add(7 * time.Millisecond),
		{"c", 1}: t0.Add(23 * time.Millisecond),
		{"d", 1}: t0.Add(30 * time.Millisecond),
		{"d", 2}: t0.Add(31 * time.Millisecond),
	}
	lookup := func(id string, attempt int) (time.Time, bool) {
		v, ok := received[attemptKey{id, attempt}]
		return v, ok
	}
	// c is measured from b, its last parent to complete; d's parent c has
	// no complete transition in this snapshot, so d is skipped; roots are
	// always skipped.
	require.Equal(t, []time.Duration{3 * time.Millisecond}, dispatchOverheads([]*coordinatorv1.Task{task}, lookup))

	task.Steps[2].Transitions = []*coordinatorv1.Transition{tr(pending, 0), tr(running, 23), tr(complete, 25)}
	require.Equal(t, []time.Duration{3 * time.Millisecond, 6 * time.Millisecond},
		dispatchOverheads([]*coordinatorv1.Task{task}, lookup), "d's final attempt counts, from c's completion")
	require.Empty(t, dispatchOverheads(nil, lookup))
}
