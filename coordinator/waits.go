package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/expr"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// Durable waits: a step declared with wait_for (a signal) or sleep runs
// no handler and holds no executor slot. Once ready it starts an attempt
// of its own kind: the step moves to in_progress with no executor, and the
// time its wait ends (the sleep's end, or the signal's timeout) is stored
// as the step's NextRetryAt in that same transition. Nothing else about a
// wait lives only in memory, so a restarted coordinator, or one taking the
// task over, rebuilds it from the store: the task's wake timer (armWake)
// fires at the earliest wait's end, and signals not yet consumed are read
// back with the task.
//
// A signal is stored when it arrives for a step not waiting yet, and is
// consumed, exactly once, by the step attempt whose completion names it
// (store.StepChange.Signal), in the commit that completes that step.

// waitState is a task run's memory of its signals. It is guarded by the
// run's mu.
type waitState struct {
	// signals are the task's signals not yet consumed, oldest first; one
	// consumed in memory is marked so (ConsumedStepID) until the run is
	// rebuilt from the store.
	signals []*store.Signal
	// stale means signals could not be read from the store: the next
	// wake reads them again before any wait is settled.
	stale bool
}

// waitSpec is step i's wait, or nil for a step that runs a handler.
func waitSpec(tr *taskRun, i int) *template.Step {
	st := &tr.tmpl.tmpl.Steps[tr.tix(i)]
	if !st.IsWait() {
		return nil
	}
	return st
}

// hasSignalWaits reports whether any step of the template waits for a
// signal, so runs of templates without one never read signals.
func hasSignalWaits(ct *compiledTemplate) bool {
	return slices.ContainsFunc(ct.tmpl.Steps, func(s template.Step) bool { return s.WaitFor != nil })
}

// loadSignals reads the task's unconsumed signals into memory, for a run
// just built from the store. The caller holds tr.mu.
func (e *engine) loadSignals(tr *taskRun) {
	tr.waits = waitState{}
	if !hasSignalWaits(tr.tmpl) || tr.task.State.Terminal() {
		return
	}
	sigs, err := e.store.SignalList(e.ctx, &store.SignalListParams{TaskID: tr.task.ID, Pending: true})
	if err != nil {
		e.log.Warn("could not read the task's signals; will read them again", "task_id", tr.task.ID, "err", err)
		tr.waits.stale = true
		return
	}
	tr.waits.signals = sigs
}

// availableSignal is the oldest signal of that name not yet consumed.
func (tr *taskRun) availableSignal(name string) *store.Signal {
	for _, s := range tr.waits.signals {
		if s.Name == name && !s.Consumed() {
			return s
		}
	}
	return nil
}

// waiting reports whether step i is in a wait: a wait step with an
// attempt in progress.
func (tr *taskRun) waiting(i int) bool {
	return tr.steps[i].State == state.InProgress && tr.tmpl.tmpl.Steps[tr.tix(i)].IsWait()
}

// beginOwnAttempt prepares step i for an attempt that runs on no executor
// (a wait, a for_each step, a child task): in the task's first dispatch
// the task moves to in_progress, under its admission if it has one (and
// the step is remembered, to be put back if that is refused); an errored
// step goes back to pending first. The caller then records the attempt.
func (e *engine) beginOwnAttempt(c *change, i int) {
	tr, s := c.tr, c.tr.steps[i]
	if tr.task.State == state.Pending {
		if a := tr.taskAdmission(); a != nil {
			c.params.Admit, c.prevTask, tr.blocked = a, taskMoved{tr.task.State, tr.task.UpdatedAt}, nil
			c.noteGens(e.admission, a)
		}
		c.moveTask(state.InProgress, "first step started")
	}
	if c.params.Admit != nil {
		c.prevs = append(c.prevs, admissionPrev{i: i, step: s.Step})
	}
	if s.State == state.Error {
		c.moveStep(i, state.Pending, fmt.Sprintf("retrying after attempt %d of %d failed", s.Attempts, s.MaxAttempts), nil)
	}
}

// startWait starts step i's wait instead of dispatching it: the step moves
// to in_progress with no executor, storing when the wait ends. A signal
// kept for it is consumed at once, in the same change, unless the change
// hangs on an admission (then the wake that follows the commit consumes
// it). The caller holds tr.mu; tryDispatch checked readiness.
func (e *engine) startWait(c *change, i int, now time.Time) {
	tr, s, st := c.tr, c.tr.steps[i], waitSpec(c.tr, i)
	e.beginOwnAttempt(c, i)
	var (
		until  time.Time
		reason string
		meta   = map[string]string{}
	)
	switch {
	case st.WaitFor != nil:
		meta["wait"], meta["signal"] = "signal", st.WaitFor.Signal
		reason = fmt.Sprintf("attempt %d waits for signal %s", s.Attempts+1, st.WaitFor.Signal)
		if d := time.Duration(st.WaitFor.Timeout); d > 0 {
			until = now.Add(d)
			reason += fmt.Sprintf(" until %s (timeout %s)", until.UTC().Format(time.RFC3339Nano), d)
		}
	case st.Until != "":
		var err error
		if until, err = e.untilOf(tr, i); err != nil {
			c.moveStep(i, state.InProgress, fmt.Sprintf("attempt %d waits until %s", s.Attempts+1, st.Until),
				func(sc *store.StepChange) { sc.Attempts = s.Attempts + 1 })
			// The same inputs give the same time: no retry can help.
			e.failStep(c, i, &store.StepError{Message: err.Error(), Class: "InvalidUntil"}, 0, "")
			return
		}
		until = maxTime(until, now) // a time already past ends the wait at once
		meta["wait"] = "until"
		reason = fmt.Sprintf("attempt %d waits until %s (%s)", s.Attempts+1, until.UTC().Format(time.RFC3339Nano), st.Until)
	default:
		until = now.Add(time.Duration(st.Sleep))
		meta["wait"] = "sleep"
		reason = fmt.Sprintf("attempt %d sleeps %s, until %s", s.Attempts+1, time.Duration(st.Sleep), until.UTC().Format(time.RFC3339Nano))
	}
	if !until.IsZero() {
		meta["until"] = until.UTC().Format(time.RFC3339Nano)
	}
	raw, _ := json.Marshal(meta)
	c.moveStep(i, state.InProgress, reason, func(sc *store.StepChange) {
		sc.Attempts = s.Attempts + 1
		sc.NextRetryAt = until
		sc.Metadata = raw
	})
	tr.setInFlight(i, true)
	if c.params.Admit == nil {
		e.settleWait(c, i, now)
	}
}

// settleWait ends step i's wait if it can end now: its signal is there,
// or its time has come (a sleep completes, a signal's wait times out).
// The caller holds tr.mu.
func (e *engine) settleWait(c *change, i int, now time.Time) {
	tr, s, st := c.tr, c.tr.steps[i], waitSpec(c.tr, i)
	if st == nil || !tr.waiting(i) {
		return
	}
	due := !s.NextRetryAt.IsZero() && !now.Before(s.NextRetryAt)
	switch {
	case st.WaitFor != nil:
		if tr.waits.stale {
			return // a signal may be stored that memory lacks; the wake reads them first
		}
		if sig := tr.availableSignal(st.WaitFor.Signal); sig != nil {
			e.consumeSignal(c, i, sig)
			return
		}
		if due {
			reason := fmt.Sprintf("no signal %s within %s", st.WaitFor.Signal, time.Duration(st.WaitFor.Timeout))
			e.settleAttempt(tr, i, reason)
			e.failStep(c, i, &store.StepError{Message: reason, Class: "Timeout", Retryable: true}, 0, "")
		}
	case due:
		e.settleAttempt(tr, i, "")
		results, _ := json.Marshal(map[string]string{"slept_until": s.NextRetryAt.UTC().Format(time.RFC3339Nano)})
		slept := fmt.Sprintf("attempt %d slept %s", s.Attempts, time.Duration(st.Sleep))
		if st.Until != "" {
			slept = fmt.Sprintf("attempt %d waited until %s", s.Attempts, s.NextRetryAt.UTC().Format(time.RFC3339Nano))
		}
		c.moveStep(i, state.Complete, slept, func(sc *store.StepChange) {
			sc.Results = results
		})
		e.schedule(c, tr.tmpl.children[i])
	}
}

// consumeSignal completes waiting step i with sig's payload as its result;
// the change records the consumption, so it is stored with the completion
// or not at all. The caller holds tr.mu.
func (e *engine) consumeSignal(c *change, i int, sig *store.Signal) {
	tr, s := c.tr, c.tr.steps[i]
	e.settleAttempt(tr, i, "")
	results := sig.Payload
	if results == nil {
		results = json.RawMessage("null")
	}
	consumed := *sig
	consumed.ConsumedStepID, consumed.ConsumedAttempt, consumed.ConsumedAt = "", 0, time.Time{}
	meta, _ := json.Marshal(map[string]string{"signal": sig.Name, "signal_id": sig.ID})
	c.moveStep(i, state.Complete, fmt.Sprintf("attempt %d received signal %s", s.Attempts, sig.Name), func(sc *store.StepChange) {
		sc.Results = results
		sc.Metadata = meta
		sc.Signal = &consumed
	})
	// Marked in memory at once, so no other wait of this change takes it;
	// a change that is not written makes the run reload its signals.
	sig.ConsumedStepID, sig.ConsumedAttempt, sig.ConsumedAt = s.ID, s.Attempts, c.params.At
	e.schedule(c, tr.tmpl.children[i])
}

// settleWaits ends every wait of the task that can end now; a wake calls
// it. The caller holds tr.mu.
func (e *engine) settleWaits(c *change) {
	tr := c.tr
	if tr.waits.stale {
		e.loadSignals(tr)
	}
	if tr.task.State != state.Pending && tr.task.State != state.InProgress {
		return
	}
	for i := range tr.steps {
		if tr.waiting(i) {
			e.settleWait(c, i, c.params.At)
		}
	}
}

// nextWaitWake is when the task must wake for its waits: at once for a
// wait whose signal is there, else the earliest end of a wait; zero for
// none. The caller holds tr.mu.
func (e *engine) nextWaitWake(tr *taskRun) time.Time {
	var at time.Time
	if tr.waits.stale {
		at = e.now().Add(time.Second) // read the signals again
	}
	for i := range tr.steps {
		if !tr.waiting(i) {
			continue
		}
		t := tr.steps[i].NextRetryAt
		if w := tr.tmpl.tmpl.Steps[tr.tix(i)].WaitFor; w != nil && tr.availableSignal(w.Signal) != nil {
			t = e.now()
		}
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	return at
}

// endWaits fails the waits of a task that failed: nothing will signal an
// errored task, so its waits would hold it in memory for nothing. A retry
// of the task waits again. The caller holds tr.mu.
func (e *engine) endWaits(c *change, reason string) {
	tr := c.tr
	for i := range tr.steps {
		if !tr.waiting(i) {
			continue
		}
		e.settleAttempt(tr, i, reason)
		serr := &store.StepError{Message: reason, Class: "TaskFailed", Retryable: true}
		c.moveStep(i, state.Error, fmt.Sprintf("attempt %d stopped waiting: %s", tr.steps[i].Attempts, reason), func(sc *store.StepChange) {
			sc.Error = serr
		})
	}
}

// undoWaitStarts puts back, in memory, the waits a creation's change
// started when its admission was refused and the task was stored as it
// was before (undispatched).
func (e *engine) undoWaitStarts(c *change, undispatched *store.TaskCreateParams) {
	tr := c.tr
	for _, p := range c.prevs {
		if waitSpec(tr, p.i) == nil && childSpec(tr, p.i) == nil && !tr.isForEach(p.i) { // child and for_each steps start alike
			continue
		}
		tr.steps[p.i].Step = *undispatched.Steps[p.i]
		tr.sync(p.i)
		tr.setInFlight(p.i, false)
	}
}

// waitReasonOf is why waiting step i waits: for its signal (key names
// it; until is its timeout) or in its sleep (until it ends); nil for a
// step not in a wait.
func waitReasonOf(tr *taskRun, i int) *waitReason {
	if tr.childRunning(i) {
		return childWaitReason(tr, i) // children.go
	}
	if !tr.waiting(i) {
		return nil
	}
	s := tr.steps[i]
	if w := tr.tmpl.tmpl.Steps[tr.tix(i)].WaitFor; w != nil {
		return &waitReason{reason: waitSignal, key: w.Signal, until: s.NextRetryAt}
	}
	return &waitReason{reason: waitSleep, until: s.NextRetryAt}
}

// signalTask delivers a signal to a task: a step waiting for it completes
// with the payload, in one commit with the signal's consumption; else the
// signal is stored for a step that will wait for it. consumedBy names the
// step that consumed it, "" when it was kept.
//
// Refusals change nothing: a task that is not pending or in progress
// (FailedPrecondition: nothing will run again to consume it, unless an
// errored task is retried, and then a new signal is sent); a signal no
// step of the task declares (NotFound); and one no step could still
// consume (FailedPrecondition): every step declaring it finished, or each
// that will wait has a signal kept already. So a second signal for a step
// that consumed one, or that has one waiting, is refused, never queued.
func (e *engine) signalTask(ctx context.Context, id, name string, payload json.RawMessage) (snap *snapshot, consumedBy string, err error) {
	if err := template.CheckName("signal", name); err != nil {
		return nil, "", invalidf("%s", err)
	}
	if len(payload) > 0 && !json.Valid(payload) {
		return nil, "", invalidf("payload: not valid JSON")
	}
	if len(payload) > e.limits.MaxResultBytes {
		return nil, "", exhaustedf("payload is %d bytes, over the limit of %d bytes (max_result_bytes): it becomes a step's results", len(payload), e.limits.MaxResultBytes)
	}
	if len(payload) == 0 {
		payload = nil
	}
	snap, err = e.withTask(ctx, id, func(tr *taskRun) error {
		if tr.task.State != state.Pending && tr.task.State != state.InProgress {
			return preconditionf("task %s is %s; only a pending or in-progress task takes signals", id, tr.task.State)
		}
		var declaring []int
		var declared []string
		for i, st := range tr.tmpl.tmpl.Steps {
			if st.WaitFor == nil {
				continue
			}
			declared = append(declared, st.WaitFor.Signal)
			if st.WaitFor.Signal == name {
				declaring = append(declaring, i)
			}
		}
		if len(declaring) == 0 {
			known := "it declares none"
			if len(declared) > 0 {
				slices.Sort(declared)
				known = "it waits for " + strings.Join(slices.Compact(declared), ", ")
			}
			return notFoundf("signal %q: no step of task %s (template %s/%s@%s) waits for it; %s",
				name, id, tr.task.Namespace, tr.task.Name, tr.task.Version, known)
		}
		if tr.waits.stale {
			if e.loadSignals(tr); tr.waits.stale {
				return fmt.Errorf("signal %q to task %s: could not read the signals it has: %w", name, id, store.ErrUnavailable)
			}
		}
		now := e.now()
		sig := &store.Signal{ID: uuid.Must(uuid.NewV7()).String(), TaskID: id, Name: name, Payload: payload, ReceivedAt: now}
		for _, i := range declaring {
			if !tr.waiting(i) || tr.availableSignal(name) != nil {
				continue
			}
			c := e.newChange(tr)
			e.consumeSignal(c, i, sig)
			if err := e.commit(ctx, c); err != nil {
				return err
			}
			consumedBy = tr.steps[i].Name
			return nil
		}
		// Kept for a step that will wait: one signal per such step.
		future, kept := 0, 0
		var finished []string
		for _, i := range declaring {
			switch s := tr.steps[i]; {
			case s.State == state.Pending || s.State == state.Error || tr.waiting(i):
				future++
			default:
				finished = append(finished, fmt.Sprintf("%s is %s", s.Name, s.State))
			}
		}
		for _, s := range tr.waits.signals {
			if s.Name == name && !s.Consumed() {
				kept++
			}
		}
		if kept >= future {
			if future == 0 {
				return preconditionf("signal %q: no step of task %s will wait for it again (%s)", name, id, strings.Join(finished, "; "))
			}
			return preconditionf("signal %q: task %s keeps %d already, one for each step that will wait for it; each is consumed when its step waits", name, id, kept)
		}
		err := e.store.SignalCreate(ctx, &store.SignalCreateParams{Lease: e.lease.Load(), Signal: sig, At: now})
		switch {
		case errors.Is(err, store.ErrLeaseLost):
			e.retire(tr)
			return err
		case err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound):
			// Perhaps stored: read the signals again before relying on them.
			tr.waits.stale = true
			e.armWake(tr, now)
			return err
		case err != nil:
			return err
		}
		tr.waits.signals = append(tr.waits.signals, sig)
		// A wait the signal can end now (one started by a change that hung
		// on an admission) is woken.
		e.armWake(tr, now)
		return nil
	})
	return snap, consumedBy, err
}

// untilOf evaluates waiting step i's until expression over the task's
// context and its parents' results: an RFC 3339 time, or seconds since
// the Unix epoch.
func (e *engine) untilOf(tr *taskRun, i int) (time.Time, error) {
	t := tr.tix(i)
	in, err := expr.ParseInputs(tr.task.Context, tr.parentResults(t))
	if err != nil {
		return time.Time{}, fmt.Errorf("until: %w", err)
	}
	raw, err := tr.tmpl.until[t].Eval(in)
	if err != nil {
		return time.Time{}, fmt.Errorf("until %w", err)
	}
	return parseUntil(raw)
}

// parseUntil reads the value of an until expression: an RFC 3339 string
// or a number of seconds since the Unix epoch.
func parseUntil(raw json.RawMessage) (time.Time, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return time.Time{}, fmt.Errorf("until: %w", err)
	}
	switch x := v.(type) {
	case string:
		at, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return time.Time{}, fmt.Errorf("until: %q is not an RFC 3339 time", x)
		}
		return at, nil
	case float64:
		sec, frac := math.Modf(x)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("until: %s is neither an RFC 3339 time nor seconds since the epoch", raw)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
