package coordinator

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// Decision points. A step marked decision in its template returns which of
// its children run ({"next": [...]}). When its result is applied the
// choice is checked (a bad one fails the step permanently), and the steps
// on branches not taken move to skipped in the same change, so the skips
// are committed with the result that caused them. The rules of which steps
// run, wait or are skipped are plan's (plan.EdgeOf, plan.Skips).

// isDecision reports whether step i of the task is a decision step.
func (tr *taskRun) isDecision(i int) bool {
	return i < len(tr.tmpl.tmpl.Steps) && tr.tmpl.tmpl.Steps[i].Decision
}

// chooseNext reads the children decision step i chose from results, as
// step indices. It reads names from the template, not from tr.steps, which
// newTaskRun fills in while it syncs.
func (tr *taskRun) chooseNext(i int, results []byte) ([]int, error) {
	steps := tr.tmpl.tmpl.Steps
	children := make(map[string]int, len(tr.tmpl.children[i]))
	for _, c := range tr.tmpl.children[i] {
		children[steps[c].Name] = c
	}
	chosen, err := plan.Choose(results, children)
	if err != nil {
		return nil, fmt.Errorf("decision step %s: %w", steps[i].Name, err)
	}
	return chosen, nil
}

// checkDecision refuses results of step i that do not say which of its
// children to run, if it is a decision step.
func (tr *taskRun) checkDecision(i int, results []byte) error {
	if !tr.isDecision(i) {
		return nil
	}
	_, err := tr.chooseNext(i, results)
	return err
}

// syncChosen refreshes the readiness view's choice of decision step i after
// its state changed: the children its stored result chose once it is
// complete, or once it is resolved manually with results that name
// "next" (resolved without, it takes every branch); none otherwise. A
// stored result was checked before it was committed, so an error here
// means the store holds what this build does not read; the step then
// chooses none, which skips its branches rather than running them unasked.
func (tr *taskRun) syncChosen(i int) {
	v := &tr.view[i]
	if !v.Decision {
		return
	}
	byHand := v.State == state.ResolvedManually && plan.NamesNext(tr.steps[i].Results)
	if v.State != state.Complete && !byHand {
		v.Chosen, v.ChoseByHand = nil, false
		return
	}
	if v.Chosen != nil {
		return
	}
	chosen, err := tr.chooseNext(i, tr.steps[i].Results)
	if err != nil {
		chosen = []int{}
	}
	v.Chosen, v.ChoseByHand = chosen, byHand
}

// failDecision fails decision step i permanently for a result that does
// not say which children to run: no retry of the same handler is expected
// to answer differently.
func (e *engine) failDecision(c *change, i int, err error, executorID string) {
	e.failStep(c, i, &store.StepError{Message: decisionMessage(err), Class: "InvalidDecision"}, 0, executorID)
}

// decisionMessage is a bad decision's error for people: what is wrong,
// without the sentinel's words.
func decisionMessage(err error) string {
	msg := err.Error()
	if errors.Is(err, plan.ErrDecision) {
		msg = strings.Replace(msg, plan.ErrDecision.Error()+": ", "", 1)
	}
	return msg
}

// skipUntaken moves to skipped every pending step among seeds (every step
// when seeds is nil) that lies only on branches not taken, and every step
// below them that then does too. It returns seeds with the children of the
// skipped steps added: the steps whose readiness may have changed. The
// caller holds tr.mu.
func (e *engine) skipUntaken(c *change, seeds []int) []int {
	tr := c.tr
	if !tr.decisions {
		return seeds
	}
	skips := plan.Skips(tr.view, tr.tmpl.children, seeds)
	if len(skips) == 0 {
		return seeds
	}
	cands := seeds
	if seeds != nil {
		cands = append(make([]int, 0, len(seeds)+len(skips)), seeds...)
	}
	for _, j := range skips {
		c.moveStep(j, state.Skipped, tr.skipReason(j), nil)
		if seeds != nil {
			cands = append(cands, tr.tmpl.children[j]...)
		}
	}
	return cands
}

// skipReason says why step j is skipped: which decisions did not choose
// it, and which of its parents were skipped.
func (tr *taskRun) skipReason(j int) string {
	var notChosen, skipped []string
	for _, p := range tr.tmpl.parents[j] {
		if tr.view[p].State == state.Skipped {
			skipped = append(skipped, tr.tmpl.tmpl.Steps[p].Name)
		} else {
			notChosen = append(notChosen, tr.tmpl.tmpl.Steps[p].Name)
		}
	}
	var parts []string
	if len(notChosen) == 1 {
		parts = append(parts, "not chosen by decision step "+notChosen[0])
	} else if len(notChosen) > 1 {
		parts = append(parts, "not chosen by decision steps "+strings.Join(notChosen, ", "))
	}
	if len(skipped) == 1 {
		parts = append(parts, "its parent "+skipped[0]+" was skipped")
	} else if len(skipped) > 1 {
		parts = append(parts, "its parents "+strings.Join(skipped, ", ")+" were skipped")
	}
	return "not taken: " + strings.Join(parts, "; ")
}
