package plan

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
)

func TestEdgeOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		parent Step
		want   Edge
	}{
		{"pending parent", Step{State: state.Pending}, EdgeOpen},
		{"running parent", Step{State: state.InProgress}, EdgeOpen},
		{"errored parent", Step{State: state.Error, Retryable: true, MaxAttempts: 3}, EdgeOpen},
		{"cancelled parent", Step{State: state.Cancelled}, EdgeOpen},
		{"complete parent", Step{State: state.Complete}, EdgeTaken},
		{"resolved parent", Step{State: state.ResolvedManually}, EdgeTaken},
		{"skipped parent", Step{State: state.Skipped}, EdgeNotTaken},
		{"decision chose the child", Step{State: state.Complete, Decision: true, Chosen: []int{1}}, EdgeTaken},
		{"decision chose another", Step{State: state.Complete, Decision: true, Chosen: []int{2}}, EdgeNotTaken},
		{"decision chose none", Step{State: state.Complete, Decision: true}, EdgeNotTaken},
		{"decision resolved manually takes every branch", Step{State: state.ResolvedManually, Decision: true}, EdgeTaken},
		{"decision resolved choosing the child", Step{State: state.ResolvedManually, Decision: true, ChoseByHand: true, Chosen: []int{1}}, EdgeTaken},
		{"decision resolved choosing another", Step{State: state.ResolvedManually, Decision: true, ChoseByHand: true, Chosen: []int{2}}, EdgeNotTaken},
		{"decision resolved choosing none", Step{State: state.ResolvedManually, Decision: true, ChoseByHand: true, Chosen: []int{}}, EdgeNotTaken},
		{"a plain step's choice is not read", Step{State: state.ResolvedManually, ChoseByHand: true, Chosen: []int{2}}, EdgeTaken},
		{"decision still running", Step{State: state.InProgress, Decision: true}, EdgeOpen},
		{"decision skipped", Step{State: state.Skipped, Decision: true, Chosen: []int{1}}, EdgeNotTaken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			steps := []Step{tc.parent, {State: state.Pending, Parents: []int{0}}, {State: state.Pending, Parents: []int{0}}}
			require.Equal(t, tc.want, EdgeOf(steps, 0, 1))
		})
	}
	require.Equal(t, "open", EdgeOpen.String())
	require.Equal(t, "taken", EdgeTaken.String())
	require.Equal(t, "not taken", EdgeNotTaken.String())
}

// dagStep describes one step of a scenario by names.
type dagStep struct {
	name     string
	parents  []string
	st       state.State // "" is pending
	decision bool
	chosen   []string
}

// build turns a scenario into plan steps and the children lists.
func build(t *testing.T, spec []dagStep) (steps []Step, children [][]int, index map[string]int) {
	t.Helper()
	index = map[string]int{}
	for i, s := range spec {
		index[s.name] = i
	}
	steps = make([]Step, len(spec))
	children = make([][]int, len(spec))
	for i, s := range spec {
		st := s.st
		if st == "" {
			st = state.Pending
		}
		steps[i] = Step{State: st, Decision: s.decision, Retryable: true, MaxAttempts: 3}
		for _, p := range s.parents {
			pi, ok := index[p]
			require.True(t, ok, "unknown parent %s", p)
			steps[i].Parents = append(steps[i].Parents, pi)
			children[pi] = append(children[pi], i)
		}
		for _, c := range s.chosen {
			steps[i].Chosen = append(steps[i].Chosen, index[c])
		}
		slices.Sort(steps[i].Chosen)
	}
	return steps, children, index
}

func namesOf(spec []dagStep, idx []int) []string {
	out := []string{}
	for _, i := range idx {
		out = append(out, spec[i].name)
	}
	return out
}

// TestBranches plays scenarios of decision points: what Skips moves to
// skipped (from every step, and from the decision's children only, which
// is how the engine calls it), then what is ready and what the task's
// outcome is once those skips are applied.
// ParentsSatisfied over several parents: any open edge holds the step
// back wherever it is in the list, and with none open at least one must be
// taken.
func TestParentsSatisfied(t *testing.T) {
	t.Parallel()
	var (
		open     = Step{State: state.InProgress}
		taken    = Step{State: state.Complete}
		notTaken = Step{State: state.Skipped}
	)
	cases := []struct {
		name    string
		parents []Step
		want    bool
	}{
		{"root", nil, true},
		{"all taken", []Step{taken, taken, taken}, true},
		{"open first", []Step{open, taken, taken}, false},
		{"open in the middle", []Step{taken, open, taken}, false},
		{"open last", []Step{taken, taken, open}, false},
		{"open behind not taken", []Step{open, notTaken}, false},
		{"one taken among not taken", []Step{notTaken, taken, notTaken}, true},
		{"none taken", []Step{notTaken, notTaken}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			steps := append(slices.Clone(tc.parents), Step{State: state.Pending})
			for i := range tc.parents {
				steps[len(steps)-1].Parents = append(steps[len(steps)-1].Parents, i)
			}
			require.Equal(t, tc.want, ParentsSatisfied(steps, len(steps)-1))
		})
	}
}

func TestBranches(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		spec    []dagStep
		seeds   []string // the decision's children; nil: every step
		skips   []string
		ready   []string
		outcome Outcome
	}{
		{
			name: "no decision: plain diamond waits for both parents",
			spec: []dagStep{
				{name: "top", st: state.Complete},
				{name: "a", parents: []string{"top"}, st: state.Complete},
				{name: "b", parents: []string{"top"}},
				{name: "join", parents: []string{"a", "b"}},
			},
			skips: []string{}, ready: []string{"b"},
		},
		{
			name: "diamond: decision chooses a, b is skipped, join waits for a only",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{"a"}},
				{name: "a", parents: []string{"decide"}},
				{name: "b", parents: []string{"decide"}},
				{name: "join", parents: []string{"a", "b"}},
			},
			seeds: []string{"a", "b"},
			skips: []string{"b"}, ready: []string{"a"},
		},
		{
			name: "diamond: the taken branch is done, so join runs",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{"a"}},
				{name: "a", parents: []string{"decide"}, st: state.Complete},
				{name: "b", parents: []string{"decide"}, st: state.Skipped},
				{name: "join", parents: []string{"a", "b"}},
			},
			skips: []string{}, ready: []string{"join"},
		},
		{
			name: "diamond: join done completes the task with b skipped",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{"a"}},
				{name: "a", parents: []string{"decide"}, st: state.Complete},
				{name: "b", parents: []string{"decide"}, st: state.Skipped},
				{name: "join", parents: []string{"a", "b"}, st: state.Complete},
			},
			skips: []string{}, ready: []string{}, outcome: Complete,
		},
		{
			name: "decision still running: nothing below it moves",
			spec: []dagStep{
				{name: "decide", st: state.InProgress, decision: true},
				{name: "a", parents: []string{"decide"}},
				{name: "b", parents: []string{"decide"}},
				{name: "join", parents: []string{"a", "b"}},
			},
			skips: []string{}, ready: []string{},
		},
		{
			name: "a skipped branch is skipped all the way down to the join",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{"a"}},
				{name: "a", parents: []string{"decide"}},
				{name: "b", parents: []string{"decide"}},
				{name: "b2", parents: []string{"b"}},
				{name: "b3", parents: []string{"b2"}},
				{name: "join", parents: []string{"a", "b3"}},
			},
			seeds: []string{"a", "b"},
			skips: []string{"b", "b2", "b3"}, ready: []string{"a"},
		},
		{
			name: "all branches not chosen: the join is skipped too and the task completes",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{}},
				{name: "a", parents: []string{"decide"}},
				{name: "b", parents: []string{"decide"}},
				{name: "join", parents: []string{"a", "b"}},
			},
			seeds: []string{"a", "b"},
			skips: []string{"a", "b", "join"}, ready: []string{}, outcome: Complete,
		},
		{
			name: "nested decisions: the inner one's unchosen child and the outer one's are skipped",
			spec: []dagStep{
				{name: "outer", st: state.Complete, decision: true, chosen: []string{"inner"}},
				{name: "inner", parents: []string{"outer"}, st: state.Complete, decision: true, chosen: []string{"q"}},
				{name: "y", parents: []string{"outer"}, st: state.Skipped},
				{name: "y2", parents: []string{"y"}, st: state.Skipped},
				{name: "p", parents: []string{"inner"}},
				{name: "q", parents: []string{"inner"}},
				{name: "join", parents: []string{"p", "q", "y2"}},
			},
			seeds: []string{"p", "q"},
			skips: []string{"p"}, ready: []string{"q"},
		},
		{
			name: "nested decisions: the outer one not taking the inner skips everything below it",
			spec: []dagStep{
				{name: "outer", st: state.Complete, decision: true, chosen: []string{"y"}},
				{name: "inner", parents: []string{"outer"}, decision: true},
				{name: "y", parents: []string{"outer"}},
				{name: "p", parents: []string{"inner"}},
				{name: "q", parents: []string{"inner"}},
				{name: "join", parents: []string{"p", "q", "y"}},
			},
			seeds: []string{"inner", "y"},
			skips: []string{"inner", "p", "q"}, ready: []string{"y"},
		},
		{
			name: "reachable through a taken and a not-taken path: it runs",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{"a"}},
				{name: "a", parents: []string{"decide"}, st: state.Complete},
				{name: "b", parents: []string{"decide"}},
				{name: "c", parents: []string{"a", "b"}},
			},
			seeds: []string{"a", "b"},
			skips: []string{"b"}, ready: []string{"c"},
		},
		{
			name: "a non-chosen child with another, plain parent is still taken through that one",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{"a"}},
				{name: "other", st: state.Complete},
				{name: "a", parents: []string{"decide"}},
				{name: "b", parents: []string{"decide", "other"}},
			},
			seeds: []string{"a", "b"},
			skips: []string{}, ready: []string{"a", "b"},
		},
		{
			name: "a non-chosen child whose other parent has not settled waits",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{"a"}},
				{name: "other", st: state.InProgress},
				{name: "a", parents: []string{"decide"}},
				{name: "b", parents: []string{"decide", "other"}},
			},
			seeds: []string{"a", "b"},
			skips: []string{}, ready: []string{"a"},
		},
		{
			name: "a decision resolved manually takes every branch",
			spec: []dagStep{
				{name: "decide", st: state.ResolvedManually, decision: true},
				{name: "a", parents: []string{"decide"}},
				{name: "b", parents: []string{"decide"}},
			},
			skips: []string{}, ready: []string{"a", "b"},
		},
		{
			name: "a step already running or done is never skipped",
			spec: []dagStep{
				{name: "decide", st: state.Complete, decision: true, chosen: []string{}},
				{name: "a", parents: []string{"decide"}, st: state.Complete},
				{name: "b", parents: []string{"decide"}, st: state.InProgress},
			},
			skips: []string{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			steps, children, index := build(t, tc.spec)
			var seeds []int
			if tc.seeds != nil {
				for _, s := range tc.seeds {
					seeds = append(seeds, index[s])
				}
			}
			skips := Skips(steps, children, seeds)
			require.Equal(t, tc.skips, namesOf(tc.spec, skips), "skips")
			// From every step, Skips finds the same set.
			all := Skips(steps, children, nil)
			require.ElementsMatch(t, skips, all, "skips from every step")
			for _, i := range skips {
				steps[i].State = state.Skipped
			}
			// Skips found everything: nothing more is NotTaken and pending.
			require.Empty(t, Skips(steps, children, nil), "a second pass skips nothing")
			if tc.ready != nil {
				var ready []int
				for i := range steps {
					if Ready(steps, i, t0) {
						ready = append(ready, i)
					}
				}
				require.Equal(t, tc.ready, namesOf(tc.spec, ready), "ready")
				v := Evaluate(steps, t0)
				require.Equal(t, tc.outcome, v.Outcome, "outcome")
				require.Equal(t, ready, v.Ready, "Evaluate agrees with Ready")
			}
		})
	}
}

func TestSkipsLeavesStepsUnchanged(t *testing.T) {
	t.Parallel()
	steps, children, _ := build(t, []dagStep{
		{name: "decide", st: state.Complete, decision: true},
		{name: "a", parents: []string{"decide"}},
		{name: "b", parents: []string{"a"}},
	})
	require.Equal(t, []int{1, 2}, Skips(steps, children, []int{1}))
	require.Equal(t, state.Pending, steps[1].State)
	require.Equal(t, state.Pending, steps[2].State)
}

func TestNotTakenWaitsNot(t *testing.T) {
	t.Parallel()
	now := t0
	steps, _, _ := build(t, []dagStep{
		{name: "decide", st: state.Complete, decision: true, chosen: []string{"a"}},
		{name: "a", parents: []string{"decide"}},
		{name: "b", parents: []string{"decide"}},
		{name: "join", parents: []string{"a", "b"}},
	})
	// b is on no branch taken: it waits for nothing (it is skipped).
	stage, parents, _ := Wait(steps, 2, now)
	require.Equal(t, StageNone, stage)
	require.Empty(t, parents)
	// Once b is skipped, join waits for a only.
	steps[2].State = state.Skipped
	stage, parents, _ = Wait(steps, 3, now)
	require.Equal(t, StageParents, stage)
	require.Equal(t, []int{1}, parents)
	stage, _, _ = Wait(steps, 2, now)
	require.Equal(t, StageNone, stage)
}

func TestChoose(t *testing.T) {
	t.Parallel()
	children := map[string]int{"customs": 3, "ship": 1, "hold": 7}
	cases := []struct {
		name    string
		results string
		want    []int
		err     string
	}{
		{name: "one", results: `{"next": ["ship"]}`, want: []int{1}},
		{name: "two, sorted by index", results: `{"next": ["customs", "ship"]}`, want: []int{1, 3}},
		{name: "repeated names count once", results: `{"next": ["ship", "ship"]}`, want: []int{1}},
		{name: "none", results: `{"next": []}`, want: []int{}},
		{name: "other fields are ignored", results: `{"next": ["hold"], "why": "fraud score"}`, want: []int{7}},
		{name: "unknown name", results: `{"next": ["ship", "teleport"]}`, err: `"next" names "teleport", which is not a child of this step (children: customs, hold, ship)`},
		{name: "empty name", results: `{"next": [""]}`, err: `"next" names "", which is not a child`},
		{name: "missing", results: `{"go": ["ship"]}`, err: `the result has no "next"`},
		{name: "empty object", results: `{}`, err: `the result has no "next"`},
		{name: "null next", results: `{"next": null}`, err: `"next" must be a list of child step names, got null`},
		{name: "a string, not a list", results: `{"next": "ship"}`, err: `"next" must be a list of child step names, got "ship"`},
		{name: "a list of numbers", results: `{"next": [1]}`, err: `"next" must be a list of child step names`},
		{name: "a list", results: `["ship"]`, err: `the result must be an object`},
		{name: "null", results: `null`, err: `the result must be an object`},
		{name: "not JSON", results: `ship`, err: `the result must be an object`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Choose([]byte(tc.results), children)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.True(t, errors.Is(err, ErrDecision))
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNamesNext(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		`{"next": ["a"]}`:         true,
		`{"next": []}`:            true,
		`{"next": null}`:          true, // Choose refuses it, naming the field
		`{"receipt": "r-9"}`:      false,
		`["next"]`:                false,
		`"next"`:                  false,
		`null`:                    false,
		``:                        false,
		`{"nested": {"next": 1}}`: false,
	} {
		require.Equal(t, want, NamesNext([]byte(in)), in)
	}
}
