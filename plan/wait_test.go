package plan

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
)

func TestWait(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	later := now.Add(5 * time.Second)
	// a → c, b → c; each case sets c (index 2) and its parents.
	for _, tc := range []struct {
		name     string
		a, b, c  Step
		stage    Stage
		parents  []int
		until    time.Time
		readyToo bool // Ready agrees that the step may run now
	}{
		{name: "root pending", a: Step{State: state.Pending}, b: Step{State: state.Pending}, c: Step{State: state.Pending}, stage: StageParents, parents: []int{0, 1}},
		{name: "one parent done", a: Step{State: state.Complete}, b: Step{State: state.InProgress}, c: Step{State: state.Pending}, stage: StageParents, parents: []int{1}},
		{name: "resolved parent satisfies", a: Step{State: state.ResolvedManually}, b: Step{State: state.Complete}, c: Step{State: state.Pending}, stage: StageSlot, readyToo: true},
		{name: "errored parent holds", a: Step{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3}, b: Step{State: state.Complete}, c: Step{State: state.Pending}, stage: StageParents, parents: []int{0}},
		{name: "running", a: Step{State: state.Complete}, b: Step{State: state.Complete}, c: Step{State: state.InProgress, InFlight: true}, stage: StageNone},
		{name: "complete", a: Step{State: state.Complete}, b: Step{State: state.Complete}, c: Step{State: state.Complete}, stage: StageNone},
		{name: "cancelled", a: Step{State: state.Complete}, b: Step{State: state.Complete}, c: Step{State: state.Cancelled}, stage: StageNone},
		{name: "backoff", a: Step{State: state.Complete}, b: Step{State: state.Complete},
			c: Step{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3, NextRetryAt: later}, stage: StageBackoff, until: later},
		{name: "retry due", a: Step{State: state.Complete}, b: Step{State: state.Complete},
			c: Step{State: state.Error, Retryable: true, Attempts: 1, MaxAttempts: 3, NextRetryAt: now}, stage: StageSlot, readyToo: true},
		{name: "no retry left", a: Step{State: state.Complete}, b: Step{State: state.Complete},
			c: Step{State: state.Error, Retryable: true, Attempts: 3, MaxAttempts: 3}, stage: StageNone},
		{name: "permanent", a: Step{State: state.Complete}, b: Step{State: state.Complete},
			c: Step{State: state.Error, Retryable: false, Attempts: 1, MaxAttempts: 3}, stage: StageNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.c.Parents = []int{0, 1}
			steps := []Step{tc.a, tc.b, tc.c}
			stage, parents, until := Wait(steps, 2, now)
			require.Equal(t, tc.stage, stage)
			require.Equal(t, tc.parents, parents)
			require.Equal(t, tc.until, until)
			require.Equal(t, tc.readyToo, Ready(steps, 2, now), "Wait and Ready agree")
		})
	}
}
