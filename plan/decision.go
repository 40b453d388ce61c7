package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tasker-go/tasker/state"
)

// Branches. A decision step chooses, by its result, which of its children
// run. Every parent→child edge of the DAG is then in one of three
// conditions, and a step's readiness is decided from the edges into it:
//
//   - it runs when no edge into it is open and at least one is taken (a
//     root, with no edges, runs at once);
//   - it is skipped when it has parents and every edge into it is not
//     taken: it lies only on branches no decision chose;
//   - otherwise it waits for the parents whose edges are open.
//
// So a join after a branch waits only for its taken parents, and a step
// reachable through both a taken and a not-taken path runs.

// Edge is the condition of the edge from a parent to a child.
type Edge int

const (
	// EdgeOpen: the parent has not settled yet.
	EdgeOpen Edge = iota
	// EdgeTaken: the parent is complete or resolved manually and, if it is
	// a decision step that completed, chose the child.
	EdgeTaken
	// EdgeNotTaken: the parent was skipped, or it is a decision step that
	// completed without choosing the child.
	EdgeNotTaken
)

func (e Edge) String() string {
	switch e {
	case EdgeTaken:
		return "taken"
	case EdgeNotTaken:
		return "not taken"
	default:
		return "open"
	}
}

// EdgeOf is the condition of the edge from steps[parent] to steps[child].
// A decision step resolved manually takes the branches its resolve's
// results name in "next" (ChoseByHand), as a handler's result would;
// resolved without them, every edge out of it is taken: the operator
// settled it, the branches below run.
func EdgeOf(steps []Step, parent, child int) Edge {
	return edgeOf(&steps[parent], child, steps[parent].State)
}

func edgeOf(p *Step, child int, st state.State) Edge {
	switch {
	case st == state.Skipped:
		return EdgeNotTaken
	case p.Decision && (st == state.Complete || st == state.ResolvedManually && p.ChoseByHand):
		if slices.Contains(p.Chosen, child) {
			return EdgeTaken
		}
		return EdgeNotTaken
	case st.Satisfied():
		return EdgeTaken
	default:
		return EdgeOpen
	}
}

// ParentsSatisfied reports whether the parents of steps[i] let it start: no
// edge into it is open, and it is a root or at least one edge is taken.
//
// The parents are looked at last first. A join is checked each time one of
// its parents settles, and parents tend to settle in the order they were
// listed (and so dispatched): from the front, each check would walk every
// parent settled so far before meeting an open one, a thousand-way join
// costing half a million looks; from the back, it meets an open one at once.
func ParentsSatisfied(steps []Step, i int) bool {
	if steps[i].Instance {
		return InstanceMayRun(steps, i)
	}
	parents := steps[i].Parents
	taken := len(parents) == 0
	for k := len(parents) - 1; k >= 0; k-- {
		switch EdgeOf(steps, parents[k], i) {
		case EdgeOpen:
			return false
		case EdgeTaken:
			taken = true
		}
	}
	return taken
}

// NotTaken reports whether steps[i] lies only on branches not taken: it has
// parents and every edge into it is not taken.
func NotTaken(steps []Step, i int) bool {
	return notTaken(steps, i, func(p int) state.State { return steps[p].State })
}

func notTaken(steps []Step, i int, stateOf func(int) state.State) bool {
	if len(steps[i].Parents) == 0 {
		return false
	}
	if steps[i].Instance {
		return stateOf(steps[i].Parents[0]) == state.Skipped
	}
	for _, p := range steps[i].Parents {
		if edgeOf(&steps[p], i, stateOf(p)) != EdgeNotTaken {
			return false
		}
	}
	return true
}

// Skips lists the steps to move to skipped, in the order they may be
// moved, starting from seeds (every step when seeds is nil): each seed
// that is pending, not in flight and NotTaken, then, through children (the
// children of each step, by index), every step below it that becomes
// NotTaken once those are skipped. steps is not changed.
func Skips(steps []Step, children [][]int, seeds []int) []int {
	var skipped map[int]bool
	stateOf := func(p int) state.State {
		if skipped[p] {
			return state.Skipped
		}
		return steps[p].State
	}
	work := seeds
	if work == nil {
		work = make([]int, len(steps))
		for i := range work {
			work[i] = i
		}
	} else {
		work = slices.Clone(work)
	}
	var out []int
	for len(work) > 0 {
		i := work[0]
		work = work[1:]
		s := &steps[i]
		if skipped[i] || s.State != state.Pending || s.InFlight || !notTaken(steps, i, stateOf) {
			continue
		}
		if skipped == nil {
			skipped = map[int]bool{}
		}
		skipped[i] = true
		out = append(out, i)
		if i < len(children) { // for_each instances, after the template's steps, have no children
			work = append(work, children[i]...)
		}
	}
	return out
}

// ErrDecision is wrapped by every error of Choose: the decision step's
// result does not say which children to run, which no retry changes.
var ErrDecision = errors.New("bad decision")

// NamesNext reports whether results is a JSON object with a "next" key:
// the results of a resolve that choose a decision step's branches.
func NamesNext(results []byte) bool {
	var body map[string]json.RawMessage
	if json.Unmarshal(results, &body) != nil {
		return false
	}
	_, ok := body["next"]
	return ok
}

// Choose reads which children a decision step chose from its result,
// {"next": ["name", ...]}. children maps the name of each of its children
// to the child's index. The chosen indices come back sorted, each once; an
// empty list chooses none. A result that is not an object with "next" as a
// list of strings, or that names a step that is not a child, is an error
// naming what is wrong.
func Choose(results []byte, children map[string]int) ([]int, error) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(results, &body); err != nil || body == nil {
		return nil, fmt.Errorf(`%w: the result must be an object {"next": [child names]}, got %s`, ErrDecision, clip(results))
	}
	raw, ok := body["next"]
	if !ok {
		return nil, fmt.Errorf(`%w: the result has no "next" (want {"next": [child names]}; children: %s)`, ErrDecision, names(children))
	}
	var next []string
	if err := json.Unmarshal(raw, &next); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, fmt.Errorf(`%w: "next" must be a list of child step names, got %s`, ErrDecision, clip(raw))
	}
	chosen := make([]int, 0, len(next))
	for _, name := range next {
		i, ok := children[name]
		if !ok {
			return nil, fmt.Errorf(`%w: "next" names %q, which is not a child of this step (children: %s)`, ErrDecision, name, names(children))
		}
		chosen = append(chosen, i)
	}
	slices.Sort(chosen)
	return slices.Compact(chosen), nil
}

func names(children map[string]int) string {
	out := make([]string, 0, len(children))
	for n := range children {
		out = append(out, n)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// clip shortens raw JSON for an error message.
func clip(raw []byte) string {
	const limit = 120
	if len(raw) > limit {
		return string(raw[:limit]) + "…"
	}
	return string(raw)
}
