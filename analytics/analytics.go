// Package analytics measures what the finished tasks of one template did,
// from their stored transitions: outcomes, durations, per-step running and
// queue times, retries, the most common failures and the bottleneck step.
//
// It is pure: the caller reads the tasks (with their steps and transitions)
// and feeds them to an Accumulator one at a time, so a window of many tasks
// is measured in chunks, holding only the durations it keeps for
// percentiles. Every number is defined in the doc comments below and in the
// README's Analytics section; the tests check them against hand-computed
// answers.
package analytics

import (
	"cmp"
	"slices"
	"time"

	"github.com/tasker-go/tasker/state"
)

// MaxTopErrors is how many distinct failures a Report lists.
const MaxTopErrors = 10

// Task is one finished task: its final state, its DAG and its history.
type Task struct {
	ID    string
	State state.State
	// CreatedAt is when the task was created; FinishedAt when it reached
	// State.
	CreatedAt  time.Time
	FinishedAt time.Time
	// Steps is the task's DAG (the steps of its pinned template version).
	Steps []Step
	// Transitions are the task's own and its steps' transitions, in commit
	// order.
	Transitions []Transition
}

// Step is a step of a task's DAG.
type Step struct {
	Name      string
	DependsOn []string
}

// Transition is one stored change of state of a task (Step empty) or of one
// of its steps.
type Transition struct {
	Step     string
	From, To state.State
	At       time.Time
	// Attempt is the step's attempt number the transition belongs to: the
	// attempt a move to in_progress starts, or the one a result ends.
	Attempt int
	// Message and Class describe a failed attempt (a step's move to error);
	// Class may be empty when the caller could not recover it.
	Message string
	Class   string
	// RetryAt is when a failed attempt's retry was due, on a step's move to
	// error; zero when no retry was scheduled (no attempt left, or a
	// permanent failure).
	RetryAt time.Time
}

// Percentiles summarizes a set of durations by nearest rank: the p-th
// percentile of n sorted values is the value at rank ceil(p×n/100), so it
// is always one of the measured durations.
type Percentiles struct {
	Count         int
	P50, P95, P99 time.Duration
}

// StepStats is what one step did across the tasks.
type StepStats struct {
	Name string
	// Running is measured per attempt that ended with a result (complete or
	// error): from its dispatch to that result. Attempts cancelled or still
	// running have no running time.
	Running Percentiles
	// QueueWait is measured per attempt: from the step becoming ready to the
	// attempt's dispatch (see Accumulator.Add).
	QueueWait Percentiles
	// Attempts counts dispatches; Retries those with an attempt number
	// above 1; Failures the attempts that ended in error.
	Attempts, Retries, Failures int
	// CriticalPathShare is the part of the completed tasks' critical paths
	// spent in this step, 0 to 1.
	CriticalPathShare float64
}

// ErrorCount is how many failed attempts of one step ended with one
// message.
type ErrorCount struct {
	Step    string
	Class   string
	Message string
	Count   int
}

// Report is the measure of a set of finished tasks over a window.
type Report struct {
	Since, Until time.Time
	// Finished counts the tasks added; Completed, Errored, Cancelled and
	// Resolved count them by final state.
	Finished, Completed, Errored, Cancelled, Resolved int
	// ThroughputPerMinute is Finished over the window's length in minutes.
	ThroughputPerMinute float64
	// SuccessRate, ErrorRate and CancelRate are Completed, Errored and
	// Cancelled over Finished; 0 when nothing finished.
	SuccessRate, ErrorRate, CancelRate float64
	// Duration is per task, from creation to the final state.
	Duration Percentiles
	// RetryRate is all steps' Retries over their Attempts; 0 when none.
	RetryRate float64
	// Steps are in the order given to New, then any other step seen, in the
	// order first seen.
	Steps []StepStats
	// TopErrors are the most frequent failures, at most MaxTopErrors, most
	// frequent first (ties in step order, then by message).
	TopErrors []ErrorCount
	// Bottleneck is the step with the largest CriticalPathShare (the first
	// in step order on a tie), and BottleneckShare that share; empty and 0
	// when no completed task had a critical path longer than zero.
	Bottleneck      string
	BottleneckShare float64
}

// Accumulator measures tasks added one at a time. It is not safe for
// concurrent use.
type Accumulator struct {
	since, until time.Time
	steps        []*stepAcc
	index        map[string]int
	counts       map[state.State]int
	finished     int
	durations    []time.Duration
	errors       map[errorKey]*ErrorCount
	// pathTotal is the summed length of the completed tasks' critical
	// paths.
	pathTotal time.Duration
}

type stepAcc struct {
	name                        string
	running, queue              []time.Duration
	attempts, retries, failures int
	path                        time.Duration
}

type errorKey struct{ step, message string }

// New starts measuring the window [since, until) with the steps listed in
// order (the template's), so they are reported even when no task ran them.
func New(since, until time.Time, order []string) *Accumulator {
	a := &Accumulator{
		since: since, until: until, index: map[string]int{},
		counts: map[state.State]int{}, errors: map[errorKey]*ErrorCount{},
	}
	for _, name := range order {
		a.step(name)
	}
	return a
}

func (a *Accumulator) step(name string) *stepAcc {
	if i, ok := a.index[name]; ok {
		return a.steps[i]
	}
	a.index[name] = len(a.steps)
	s := &stepAcc{name: name}
	a.steps = append(a.steps, s)
	return s
}

// Add measures one finished task.
//
// A step attempt's queue wait runs from the moment the step became ready to
// its dispatch (its move to in_progress). A first attempt becomes ready when
// the task was created or when its last parent completed (or was resolved
// manually), whichever is later. A retry becomes ready when it was due (the
// failed attempt's RetryAt, or the failure itself when no retry time was
// recorded) or, when something moved the step back to pending before the
// dispatch (an operator retrying the task), at that move. Either way a step
// is not ready while its task sits in error: a task resumed from error
// (error→pending) makes its steps ready no earlier than the resume.
func (a *Accumulator) Add(t *Task) {
	a.finished++
	a.counts[t.State]++
	a.durations = append(a.durations, nonNegative(t.FinishedAt.Sub(t.CreatedAt)))

	parents := make(map[string][]string, len(t.Steps))
	for _, s := range t.Steps {
		parents[s.Name] = s.DependsOn
	}
	var (
		resumes []time.Time
		names   []string
		byStep  = map[string][]*Transition{}
		done    = map[string]time.Time{}
	)
	for i := range t.Transitions {
		tr := &t.Transitions[i]
		if tr.Step == "" {
			if tr.From == state.Error && tr.To == state.Pending {
				resumes = append(resumes, tr.At)
			}
			continue
		}
		if _, seen := byStep[tr.Step]; !seen {
			names = append(names, tr.Step)
		}
		byStep[tr.Step] = append(byStep[tr.Step], tr)
		if _, ok := done[tr.Step]; !ok && tr.To.Satisfied() {
			done[tr.Step] = tr.At
		}
	}
	for _, name := range names {
		a.addStep(t, a.step(name), byStep[name], parents[name], done, resumes)
	}
	if t.State == state.Complete {
		a.addCriticalPath(t, parents, done)
	}
}

// addStep measures the attempts of one step of t from its transitions.
func (a *Accumulator) addStep(t *Task, s *stepAcc, trs []*Transition, parents []string,
	done map[string]time.Time, resumes []time.Time) {
	firstReady := t.CreatedAt
	for _, p := range parents {
		if d, ok := done[p]; ok && d.After(firstReady) {
			firstReady = d
		}
	}
	var (
		running    bool
		dispatched time.Time
		lastFail   *Transition
		// repending is an explicit move back to pending after a failure,
		// committed before the dispatch that follows it.
		repending time.Time
	)
	for _, tr := range trs {
		switch {
		case tr.To == state.InProgress:
			s.attempts++
			if tr.Attempt > 1 {
				s.retries++
			}
			ready := firstReady
			switch {
			case lastFail == nil:
			case !repending.IsZero() && repending.Before(tr.At):
				ready = repending
			case !lastFail.RetryAt.IsZero():
				ready = lastFail.RetryAt
			default:
				ready = lastFail.At
			}
			for _, r := range resumes {
				if r.After(ready) && !r.After(tr.At) {
					ready = r
				}
			}
			s.queue = append(s.queue, nonNegative(tr.At.Sub(ready)))
			running, dispatched, repending = true, tr.At, time.Time{}
		case tr.From == state.InProgress:
			if running && (tr.To == state.Complete || tr.To == state.Error) {
				s.running = append(s.running, nonNegative(tr.At.Sub(dispatched)))
			}
			running = false
			if tr.To == state.Error {
				s.failures++
				lastFail = tr
				a.addError(s.name, tr)
			}
		case tr.From == state.Error && tr.To == state.Pending:
			repending = tr.At
		}
	}
}

func (a *Accumulator) addError(step string, tr *Transition) {
	k := errorKey{step, tr.Message}
	e := a.errors[k]
	if e == nil {
		e = &ErrorCount{Step: step, Message: tr.Message}
		a.errors[k] = e
	}
	e.Count++
	if e.Class == "" {
		e.Class = tr.Class
	}
}

// addCriticalPath adds a completed task's critical path: the chain of steps
// that ends at the step to finish last and goes back, at each step, through
// the parent that finished last (the one whose completion made the step
// ready). Each step on it counts from when it became ready (the task's
// creation for a root) to its completion, so the chain adds up to the time
// from the task's creation to its last step's completion, and no other
// chain through the DAG adds up to more. A task with a step that never
// completed (it was resolved without a transition, say) is left out.
func (a *Accumulator) addCriticalPath(t *Task, parents map[string][]string, done map[string]time.Time) {
	var end string
	var endAt time.Time
	for _, s := range t.Steps {
		d, ok := done[s.Name]
		if !ok {
			return
		}
		if end == "" || d.After(endAt) {
			end, endAt = s.Name, d
		}
	}
	// The DAG has no cycle; the bound only guards against bad input.
	for name, hops := end, 0; name != "" && hops < len(t.Steps); hops++ {
		var prev string
		var prevAt time.Time
		for _, p := range parents[name] {
			if d := done[p]; prev == "" || d.After(prevAt) {
				prev, prevAt = p, d
			}
		}
		ready := t.CreatedAt
		if prev != "" && prevAt.After(ready) {
			ready = prevAt
		}
		span := nonNegative(done[name].Sub(ready))
		a.step(name).path += span
		a.pathTotal += span
		name = prev
	}
}

// Report returns the numbers for the tasks added so far.
func (a *Accumulator) Report() *Report {
	r := &Report{
		Since: a.since, Until: a.until,
		Finished:  a.finished,
		Completed: a.counts[state.Complete], Errored: a.counts[state.Error],
		Cancelled: a.counts[state.Cancelled], Resolved: a.counts[state.ResolvedManually],
		Duration: percentiles(a.durations),
	}
	if minutes := a.until.Sub(a.since).Minutes(); minutes > 0 {
		r.ThroughputPerMinute = float64(a.finished) / minutes
	}
	if a.finished > 0 {
		n := float64(a.finished)
		r.SuccessRate, r.ErrorRate, r.CancelRate = float64(r.Completed)/n, float64(r.Errored)/n, float64(r.Cancelled)/n
	}
	var attempts, retries int
	for _, s := range a.steps {
		st := StepStats{
			Name: s.name, Running: percentiles(s.running), QueueWait: percentiles(s.queue),
			Attempts: s.attempts, Retries: s.retries, Failures: s.failures,
		}
		if a.pathTotal > 0 {
			st.CriticalPathShare = float64(s.path) / float64(a.pathTotal)
			if st.CriticalPathShare > r.BottleneckShare {
				r.Bottleneck, r.BottleneckShare = s.name, st.CriticalPathShare
			}
		}
		attempts += s.attempts
		retries += s.retries
		r.Steps = append(r.Steps, st)
	}
	if attempts > 0 {
		r.RetryRate = float64(retries) / float64(attempts)
	}
	r.TopErrors = a.topErrors()
	return r
}

func (a *Accumulator) topErrors() []ErrorCount {
	out := make([]ErrorCount, 0, len(a.errors))
	for _, e := range a.errors {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(x, y ErrorCount) int {
		return cmp.Or(
			cmp.Compare(y.Count, x.Count),
			cmp.Compare(a.index[x.Step], a.index[y.Step]),
			cmp.Compare(x.Message, y.Message),
		)
	})
	if len(out) > MaxTopErrors {
		out = out[:MaxTopErrors]
	}
	return out
}

// percentiles sorts ds in place and summarizes it.
func percentiles(ds []time.Duration) Percentiles {
	slices.Sort(ds)
	return Percentiles{
		Count: len(ds),
		P50:   Percentile(ds, 50), P95: Percentile(ds, 95), P99: Percentile(ds, 99),
	}
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted by nearest
// rank: the value at rank ceil(p×n/100), counting from 1. It is 0 for no
// values.
func Percentile(sorted []time.Duration, p int) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := (p*n + 99) / 100
	return sorted[min(max(rank, 1), n)-1]
}

// nonNegative clamps a duration measured across two clocks' readings (or a
// step resolved before its parents finished) at zero.
func nonNegative(d time.Duration) time.Duration { return max(d, 0) }
