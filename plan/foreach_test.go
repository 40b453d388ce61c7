package plan

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
)

func TestInstanceReadiness(t *testing.T) {
	for _, tc := range []struct {
		agg   state.State
		ready bool
		skip  bool
	}{
		{agg: state.Pending},
		{agg: state.InProgress, ready: true},
		{agg: state.Complete},
		{agg: state.Error},
		{agg: state.Skipped, skip: true},
	} {
		steps := []Step{
			{State: tc.agg, MaxAttempts: 3, Retryable: true},
			{State: state.Pending, MaxAttempts: 3, Parents: []int{0}, Instance: true},
		}
		require.Equal(t, tc.ready, Ready(steps, 1, t0), tc.agg)
		require.Equal(t, tc.skip, NotTaken(steps, 1), tc.agg)
	}
}

func TestForEachOutcome(t *testing.T) {
	step := func(st state.State, attempts int) Step {
		return Step{State: st, Attempts: attempts, MaxAttempts: 3, Retryable: true, Parents: []int{0}, Instance: true}
	}
	agg := Step{State: state.InProgress}
	for name, tc := range map[string]struct {
		steps  []Step
		out    ForEachOutcome
		failed int
	}{
		"empty":              {steps: []Step{agg}, out: ForEachComplete, failed: -1},
		"all complete":       {steps: []Step{agg, step(state.Complete, 1), step(state.ResolvedManually, 0)}, out: ForEachComplete, failed: -1},
		"one running":        {steps: []Step{agg, step(state.Complete, 1), step(state.InProgress, 1)}, out: ForEachRunning, failed: -1},
		"retrying":           {steps: []Step{agg, step(state.Complete, 1), step(state.Error, 2)}, out: ForEachRunning, failed: -1},
		"exhausted":          {steps: []Step{agg, step(state.Complete, 1), step(state.Error, 3), step(state.Pending, 0)}, out: ForEachFailed, failed: 2},
		"skipped is settled": {steps: []Step{agg, step(state.Skipped, 0)}, out: ForEachComplete, failed: -1},
	} {
		t.Run(name, func(t *testing.T) {
			var inst []int
			for i := 1; i < len(tc.steps); i++ {
				inst = append(inst, i)
			}
			out, failed := ForEach(tc.steps, inst)
			require.Equal(t, tc.out, out)
			require.Equal(t, tc.failed, failed)
		})
	}
}

func TestExpand(t *testing.T) {
	P, C, E := state.Pending, state.Complete, state.Error
	for name, tc := range map[string]struct {
		have []state.State
		n    int
		want Expansion
	}{
		"first start":  {n: 3, want: Expansion{Create: 3}},
		"empty list":   {n: 0, want: Expansion{}},
		"same length":  {have: []state.State{C, P, P}, n: 3, want: Expansion{Reuse: 3}},
		"longer list":  {have: []state.State{C, P}, n: 4, want: Expansion{Reuse: 2, Create: 2}},
		"shorter list": {have: []state.State{P, P, P, E}, n: 1, want: Expansion{Reuse: 1, Skip: []int{1, 2}}},
		"emptied list": {have: []state.State{P, P}, n: 0, want: Expansion{Skip: []int{0, 1}}},
	} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, Expand(tc.have, tc.n))
		})
	}
}
