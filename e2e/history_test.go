package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// The chaos and multi-coordinator suites end the same way: the coordinators
// stop, and their store's history is replayed against what was submitted.
// This file is that replay, shared; each suite adds what only it measures.

// maxListedViolations bounds how many violations an audit keeps verbatim;
// all of them are counted.
const maxListedViolations = 40

// historyRules are what a suite's templates and faults promise beyond the
// invariants every history keeps.
type historyRules struct {
	// maxAttempts, when set, is every step's stored max_attempts.
	maxAttempts int
	// onPurpose marks, in a failed attempt's reason, a failure the handler
	// chose; any other failure is counted in lostAttempts.
	onPurpose string
	// staleAfter, when set, is a lease lifetime: a transition stored after
	// one of the same task that is later by more than this was prepared
	// before its coordinator stalled and committed after the task could
	// have been taken over, which the fence must refuse.
	staleAfter time.Duration
}

// historyAudit is what replaying the stored histories found.
type historyAudit struct {
	rules historyRules

	tasks, completeTasks, steps int
	// lost counts submitted keys with no stored task; duplicates counts
	// extra tasks stored under one key.
	lost, duplicates int
	// dispatches counts step transitions to in_progress; redispatches those
	// of an attempt after the step's first.
	dispatches, redispatches int
	// doubleCompletions counts transitions to complete beyond a step's (or
	// a task's) first.
	doubleCompletions int
	// earlyStarts counts dispatches stored before one of the step's
	// parents had completed (or been skipped).
	earlyStarts int
	// skippedSteps counts steps skipped on branches no decision took.
	skippedSteps int
	// instances counts the dispatches of for_each instances.
	instances int
	// lostAttempts counts attempts failed by the coordinator (executor
	// lost, presumed lost, timed out) rather than by a handler on purpose.
	lostAttempts int
	// staleWrites counts transitions older, by more than a lease lifetime,
	// than one stored before them (see historyRules.staleAfter).
	staleWrites int
	// unfenced counts transitions stored without a lease token;
	// revenantWrites those stored under a lease that had already handed the
	// task to another: the write of a coordinator that had lost the task.
	// handoffs counts the times a task's history moves to another lease (a
	// takeover, or a restart).
	unfenced, revenantWrites, handoffs int

	violationCount int
	violations     []string
}

func (a *historyAudit) violatef(format string, args ...any) {
	a.violationCount++
	if len(a.violations) < maxListedViolations {
		a.violations = append(a.violations, fmt.Sprintf(format, args...))
	}
}

// expectedTask is a submitted task as the create that succeeded answered.
type expectedTask struct {
	key, id string
	// check, if set, says what is wrong with the stored task ("" if
	// nothing), beyond its key and id.
	check func(*store.Task) string
}

// auditHistories reads every task in st, checks the tasks against want and
// replays each one's history; also, if set, sees each history too.
func auditHistories(ctx context.Context, st store.Store, rules historyRules, want []expectedTask,
	also func(*store.Task, []*store.Step, []*store.Transition)) (*historyAudit, error) {
	a := &historyAudit{rules: rules}
	var tasks []*store.Task
	for before := ""; ; {
		page, err := st.TaskList(ctx, &store.TaskListParams{BeforeID: before, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		if len(page) == 0 {
			break
		}
		tasks = append(tasks, page...)
		before = page[len(page)-1].ID
	}
	a.checkKeys(tasks, want)
	decisions := map[string]map[string]bool{} // template ns/name@version -> its decision steps
	var templateErr error
	err := eachHistory(ctx, st, tasks, func(t *store.Task, steps []*store.Step, trs []*store.Transition) {
		ref := t.Namespace + "/" + t.Name + "@" + t.Version
		if _, ok := decisions[ref]; !ok {
			ds, err := decisionSteps(ctx, st, t)
			templateErr = errors.Join(templateErr, err)
			decisions[ref] = ds
		}
		a.checkTask(t, steps, trs, decisions[ref])
		if also != nil {
			also(t, steps, trs)
		}
	})
	return a, errors.Join(err, templateErr)
}

// decisionSteps names the decision steps of t's template version.
func decisionSteps(ctx context.Context, st store.Store, t *store.Task) (map[string]bool, error) {
	stored, err := st.TemplateGet(ctx, &store.TemplateGetParams{Namespace: t.Namespace, Name: t.Name, Version: t.Version})
	if err != nil {
		return nil, fmt.Errorf("template of task %s: %w", t.ID, err)
	}
	var tmpl template.Template
	if err := json.Unmarshal(stored.Spec, &tmpl); err != nil {
		return nil, fmt.Errorf("template of task %s: %w", t.ID, err)
	}
	out := map[string]bool{}
	for _, s := range tmpl.Steps {
		if s.Decision {
			out[s.Name] = true
		}
	}
	return out, nil
}

// expectedEnds is the state each step of a finished task must end in, by
// the branch rules (package plan) over the stored outcome: skipped where
// every edge into it was not taken, complete elsewhere.
func expectedEnds(steps []*store.Step, decisions map[string]bool) []state.State {
	index := make(map[string]int, len(steps))
	for i, s := range steps {
		index[s.Name] = i
	}
	view := make([]plan.Step, len(steps))
	children := make([]map[string]int, len(steps))
	for i, s := range steps {
		view[i] = plan.Step{State: s.State, Decision: decisions[s.Name]}
		for _, p := range s.DependsOn {
			pi := index[p]
			view[i].Parents = append(view[i].Parents, pi)
			if children[pi] == nil {
				children[pi] = map[string]int{}
			}
			children[pi][s.Name] = i
		}
	}
	for i, s := range steps {
		if view[i].Decision && s.State == state.Complete {
			view[i].Chosen, _ = plan.Choose(s.Results, children[i])
			if view[i].Chosen == nil {
				view[i].Chosen = []int{}
			}
		}
	}
	want := make([]state.State, len(steps))
	for i := range steps {
		want[i] = state.Complete
		if plan.NotTaken(view, i) {
			want[i] = state.Skipped
		}
	}
	return want
}

// eachHistory calls visit with each task's steps and transitions.
func eachHistory(ctx context.Context, st store.Store, tasks []*store.Task, visit func(*store.Task, []*store.Step, []*store.Transition)) error {
	const chunk = 200
	for from := 0; from < len(tasks); from += chunk {
		part := tasks[from:min(from+chunk, len(tasks))]
		ids := make([]string, len(part))
		for i, t := range part {
			ids[i] = t.ID
		}
		steps, err := st.StepList(ctx, ids...)
		if err != nil {
			return fmt.Errorf("list steps: %w", err)
		}
		byTask := map[string][]*store.Step{}
		for _, s := range steps {
			byTask[s.TaskID] = append(byTask[s.TaskID], s)
		}
		for _, t := range part {
			trs, err := st.TransitionList(ctx, &store.TransitionListParams{TaskID: t.ID})
			if err != nil {
				return fmt.Errorf("list transitions of %s: %w", t.ID, err)
			}
			visit(t, byTask[t.ID], trs)
		}
	}
	return nil
}

// checkKeys: every submitted key is stored exactly once, as the task the
// create answered with, and nothing else is stored.
func (a *historyAudit) checkKeys(tasks []*store.Task, want []expectedTask) {
	a.tasks = len(tasks)
	byKey := map[string][]*store.Task{}
	for _, t := range tasks {
		byKey[t.IdentityKey] = append(byKey[t.IdentityKey], t)
	}
	submitted := map[string]bool{}
	for _, w := range want {
		submitted[w.key] = true
		stored := byKey[w.key]
		switch {
		case len(stored) == 0:
			a.lost++
			a.violatef("key %s (create answered task %s) is not stored", w.key, w.id)
			continue
		case len(stored) > 1:
			a.duplicates += len(stored) - 1
			a.violatef("key %s is stored %d times", w.key, len(stored))
		}
		if stored[0].ID != w.id {
			a.violatef("key %s: create answered task %s but the store holds %s", w.key, w.id, stored[0].ID)
		}
		if w.check != nil {
			if wrong := w.check(stored[0]); wrong != "" {
				a.violatef("key %s: %s", w.key, wrong)
			}
		}
	}
	for key, ts := range byKey {
		if !submitted[key] {
			a.violatef("task %s with key %q was never submitted", ts[0].ID, key)
		}
	}
}

// checkTask replays one task's history (trs, in seq order): every
// transition legal and continuing from the last; every step complete
// exactly once, its attempts numbered 1, 2, ... within its limit, none
// started before all its parents settled — or, on a branch no decision
// took, skipped without an attempt, in the write that settled a parent;
// the task complete once, after its steps; every transition written under
// a lease, and no lease older than one that wrote before it.
func (a *historyAudit) checkTask(t *store.Task, steps []*store.Step, trs []*store.Transition, decisions map[string]bool) {
	where := fmt.Sprintf("task %s (%s/%s)", t.ID, t.Namespace, t.Name)
	a.checkFencing(where, trs)

	byStep := map[string][]*store.Transition{}
	var taskTrs []*store.Transition
	for _, tr := range trs {
		if tr.StepID == "" {
			taskTrs = append(taskTrs, tr)
			continue
		}
		byStep[tr.StepID] = append(byStep[tr.StepID], tr)
	}
	completedAt := map[string]int64{} // step name -> seq of its first completion or its skip
	startedAt := map[string][]int64{} // step name -> seqs of its moves to in_progress
	settledWhen := map[string]time.Time{}
	var lastStepComplete int64
	wantEnd := expectedEnds(steps, decisions)
	for n, s := range steps {
		a.steps++
		stepWhere := fmt.Sprintf("%s step %s", where, s.Name)
		prev, completes, nextAttempt := state.Pending, 0, 1
		for _, tr := range byStep[s.ID] {
			if tr.From != prev {
				a.violatef("%s: seq %d goes %s->%s but the step was %s", stepWhere, tr.Seq, tr.From, tr.To, prev)
			}
			if state.StepTransition(tr.From, tr.To) != state.Applied {
				a.violatef("%s: seq %d is an illegal transition %s->%s", stepWhere, tr.Seq, tr.From, tr.To)
			}
			switch tr.To {
			case state.InProgress:
				startedAt[s.Name] = append(startedAt[s.Name], tr.Seq)
				a.dispatches++
				if tr.Attempt > 1 {
					a.redispatches++
				}
				if tr.Attempt != nextAttempt {
					a.violatef("%s: seq %d dispatched attempt %d, expected attempt %d", stepWhere, tr.Seq, tr.Attempt, nextAttempt)
				}
				if tr.Attempt > s.MaxAttempts {
					a.violatef("%s: seq %d dispatched attempt %d above max_attempts %d", stepWhere, tr.Seq, tr.Attempt, s.MaxAttempts)
				}
				nextAttempt = tr.Attempt + 1
			case state.Complete:
				completes++
				if completes == 1 {
					completedAt[s.Name] = tr.Seq
					lastStepComplete = max(lastStepComplete, tr.Seq)
				} else {
					a.doubleCompletions++
					a.violatef("%s: completed again at seq %d (attempt %d, %q)", stepWhere, tr.Seq, tr.Attempt, tr.Reason)
				}
				if _, ok := settledWhen[s.Name]; !ok {
					settledWhen[s.Name] = tr.At
				}
			case state.Skipped:
				a.skippedSteps++
				completedAt[s.Name] = tr.Seq
				settledWhen[s.Name] = tr.At
				lastStepComplete = max(lastStepComplete, tr.Seq)
				if tr.Attempt != 0 {
					a.violatef("%s: skipped at seq %d after %d attempts", stepWhere, tr.Seq, tr.Attempt)
				}
			case state.Error:
				if a.rules.onPurpose == "" || !strings.Contains(tr.Reason, a.rules.onPurpose) {
					a.lostAttempts++
				}
			}
			prev = tr.To
		}
		if prev != s.State {
			a.violatef("%s: stored state %s but its transitions end at %s", stepWhere, s.State, prev)
		}
		if s.State != wantEnd[n] {
			a.violatef("%s: ended %s after %d of %d attempts (error %+v); the branch rules say %s", stepWhere, s.State, s.Attempts, s.MaxAttempts, s.Error, wantEnd[n])
		}
		if a.rules.maxAttempts != 0 && s.MaxAttempts != a.rules.maxAttempts {
			a.violatef("%s: max_attempts %d, template says %d", stepWhere, s.MaxAttempts, a.rules.maxAttempts)
		}
		if s.Attempts > s.MaxAttempts {
			a.violatef("%s: %d attempts above max_attempts %d", stepWhere, s.Attempts, s.MaxAttempts)
		}
		if s.Attempts != nextAttempt-1 {
			a.violatef("%s: stored attempts %d but %d dispatches recorded", stepWhere, s.Attempts, nextAttempt-1)
		}
	}
	for _, s := range steps {
		for _, tr := range byStep[s.ID] {
			if tr.To == state.Skipped {
				// A skip is written with the settling of a parent (the
				// decision's result, or the skip of a parent above).
				inParentsWrite := false
				for _, p := range s.DependsOn {
					if at, ok := settledWhen[p]; ok && at.Equal(tr.At) && completedAt[p] < tr.Seq {
						inParentsWrite = true
					}
				}
				if !inParentsWrite {
					a.violatef("%s step %s: skipped at seq %d, not in the write that settled a parent", where, s.Name, tr.Seq)
				}
			}
			if tr.To != state.InProgress {
				continue
			}
			if of, _, ok := template.ParseInstanceName(s.Name); ok {
				// An instance starts only while its for_each step runs:
				// after the step's start, before its completion.
				a.instances++
				if !slices.ContainsFunc(startedAt[of], func(seq int64) bool { return seq < tr.Seq }) {
					a.earlyStarts++
					a.violatef("%s step %s: attempt %d started at seq %d before its for_each step %s started", where, s.Name, tr.Attempt, tr.Seq, of)
				}
				if seq, ok := completedAt[of]; ok && seq < tr.Seq {
					a.violatef("%s step %s: attempt %d started at seq %d after its for_each step %s completed (seq %d)", where, s.Name, tr.Attempt, tr.Seq, of, seq)
				}
				if seq, ok := completedAt[s.Name]; ok && completedAt[of] < seq {
					a.violatef("%s step %s: completed at seq %d, after its for_each step %s (seq %d)", where, s.Name, seq, of, completedAt[of])
				}
			}
			for _, p := range s.DependsOn {
				if seq, ok := completedAt[p]; !ok || seq > tr.Seq {
					a.earlyStarts++
					a.violatef("%s step %s: attempt %d started at seq %d before parent %s completed or was skipped (seq %d)", where, s.Name, tr.Attempt, tr.Seq, p, seq)
				}
			}
		}
	}

	prev, completes := state.Pending, 0
	for _, tr := range taskTrs {
		if tr.From != prev {
			a.violatef("%s: seq %d goes %s->%s but the task was %s", where, tr.Seq, tr.From, tr.To, prev)
		}
		if state.TaskTransition(tr.From, tr.To) != state.Applied {
			a.violatef("%s: seq %d is an illegal transition %s->%s", where, tr.Seq, tr.From, tr.To)
		}
		if tr.To == state.Complete {
			completes++
			if completes > 1 {
				a.doubleCompletions++
				a.violatef("%s: completed again at seq %d", where, tr.Seq)
			}
			if tr.Seq < lastStepComplete {
				a.violatef("%s: completed at seq %d before its last step completed (seq %d)", where, tr.Seq, lastStepComplete)
			}
		}
		prev = tr.To
	}
	if prev != t.State {
		a.violatef("%s: stored state %s but its transitions end at %s", where, t.State, prev)
	}
	if t.State == state.Complete && completes == 1 && !t.CompletedAt.IsZero() {
		a.completeTasks++
	} else {
		a.violatef("%s: state %s, %d completions, completed_at %v", where, t.State, completes, t.CompletedAt)
	}
}

// checkFencing checks what the lease tokens and times of one task's
// transitions say about the fence: each written under a lease, and no lease
// writing again once the task has moved on to another (a task changes
// hands only when its owner's lease is no longer live, and a lease that is
// not live never is again, so its token must not come back). Tokens do not
// simply grow along a history: a coordinator that has held its lease since
// before the owner's can take the task over. With rules.staleAfter, no
// transition may be stamped more than a lease lifetime before one stored
// ahead of it.
func (a *historyAudit) checkFencing(where string, trs []*store.Transition) {
	var current int64
	handedOver := map[int64]bool{}
	var latest time.Time
	for _, tr := range trs {
		switch {
		case tr.LeaseToken == 0:
			a.unfenced++
			a.violatef("%s: seq %d (%s %s->%s) was written without a lease", where, tr.Seq, tr.StepName, tr.From, tr.To)
		case tr.LeaseToken == current:
		case handedOver[tr.LeaseToken]:
			a.revenantWrites++
			a.violatef("%s: seq %d (%s %s->%s) was written under lease %d after it had handed the task over (now lease %d)",
				where, tr.Seq, tr.StepName, tr.From, tr.To, tr.LeaseToken, current)
		default:
			if current != 0 {
				a.handoffs++
				handedOver[current] = true
			}
			current = tr.LeaseToken
		}
		if a.rules.staleAfter > 0 && tr.At.Before(latest.Add(-a.rules.staleAfter)) {
			a.staleWrites++
			a.violatef("%s: seq %d (%s %s->%s at %s) was stored after a transition at %s, over a lease lifetime later",
				where, tr.Seq, tr.StepName, tr.From, tr.To, tr.At.Format(time.RFC3339Nano), latest.Format(time.RFC3339Nano))
		}
		if tr.At.After(latest) {
			latest = tr.At
		}
	}
}

// sampleHistory is a clean history of a two-step task (b after a, b
// failing once when its executor was lost), written under lease 5 until a
// takeover by lease 9 before b's retry; tests break it on purpose.
type sampleHistory struct {
	at    time.Time
	task  *store.Task
	steps []*store.Step
}

func cleanHistory() sampleHistory {
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return sampleHistory{
		at: at,
		task: &store.Task{ID: "t1", Namespace: "chaos", Name: "pair", State: state.Complete, IdentityKey: "k0",
			Context: json.RawMessage(`{"seed":"1","n":0}`), CreatedAt: at, CompletedAt: at.Add(time.Second), OwnerToken: 9},
		steps: []*store.Step{
			{ID: "a", Name: "a", State: state.Complete, Attempts: 1, MaxAttempts: chaosRetryLimit},
			{ID: "b", Name: "b", DependsOn: []string{"a"}, State: state.Complete, Attempts: 2, MaxAttempts: chaosRetryLimit},
		},
	}
}

// transitions are the sample's history, fresh on each call, in seq order
// 1, 2, ... a hundred milliseconds apart.
func (h sampleHistory) transitions() []*store.Transition {
	var seq int64
	tr := func(step string, from, to state.State, attempt int, token int64, reason string) *store.Transition {
		seq++
		return &store.Transition{Seq: seq, TaskID: "t1", StepID: step, StepName: step, From: from, To: to,
			At: h.at.Add(time.Duration(seq) * 100 * time.Millisecond), Attempt: attempt, Reason: reason, LeaseToken: token}
	}
	return []*store.Transition{
		tr("a", state.Pending, state.InProgress, 1, 5, "dispatched"),
		tr("", state.Pending, state.InProgress, 0, 5, "first step dispatched"),
		tr("a", state.InProgress, state.Complete, 1, 5, "attempt 1 succeeded"),
		tr("b", state.Pending, state.InProgress, 1, 5, "dispatched"),
		tr("b", state.InProgress, state.Error, 1, 9, "attempt 1 of 10 failed: executor exec-1 was lost"),
		tr("b", state.Error, state.Pending, 1, 9, "retrying"),
		tr("b", state.Pending, state.InProgress, 2, 9, "dispatched"),
		tr("b", state.InProgress, state.Complete, 2, 9, "attempt 2 succeeded"),
		tr("", state.InProgress, state.Complete, 0, 9, "all steps complete"),
	}
}

// audit replays trs (and task, if given) under rules.
func (h sampleHistory) audit(rules historyRules, trs []*store.Transition, task ...*store.Task) *historyAudit {
	a := &historyAudit{rules: rules}
	t := h.task
	if len(task) > 0 {
		t = task[0]
	}
	a.checkTask(t, h.steps, trs, nil)
	return a
}

// TestHistoryAuditDecisions: a history with a decision point passes when
// the branch it did not take is skipped with its result, and each way of
// getting that wrong is caught.
func TestHistoryAuditDecisions(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	task := &store.Task{ID: "t1", Namespace: "chaos", Name: "branch", State: state.Complete, CompletedAt: at.Add(time.Second), OwnerToken: 5}
	decisions := map[string]bool{"d": true}
	steps := func(chose string) []*store.Step {
		return []*store.Step{
			{ID: "d", Name: "d", State: state.Complete, Attempts: 1, MaxAttempts: chaosRetryLimit, Results: json.RawMessage(`{"next":[` + chose + `]}`)},
			{ID: "x", Name: "x", DependsOn: []string{"d"}, State: state.Complete, Attempts: 1, MaxAttempts: chaosRetryLimit},
			{ID: "y", Name: "y", DependsOn: []string{"d"}, State: state.Skipped, MaxAttempts: chaosRetryLimit},
			{ID: "j", Name: "j", DependsOn: []string{"x", "y"}, State: state.Complete, Attempts: 1, MaxAttempts: chaosRetryLimit},
		}
	}
	// history: seq i is at at+i*100ms unless sameWrite pins it to the
	// previous one.
	type row struct {
		step     string
		from, to state.State
		attempt  int
		sameAs   bool
	}
	history := func(rows []row) []*store.Transition {
		var out []*store.Transition
		when := at
		for i, r := range rows {
			if !r.sameAs {
				when = at.Add(time.Duration(i+1) * 100 * time.Millisecond)
			}
			out = append(out, &store.Transition{Seq: int64(i + 1), TaskID: "t1", StepID: r.step, StepName: r.step,
				From: r.from, To: r.to, At: when, Attempt: r.attempt, LeaseToken: 5})
		}
		return out
	}
	clean := []row{
		{"d", state.Pending, state.InProgress, 1, false},
		{"", state.Pending, state.InProgress, 0, true},
		{"d", state.InProgress, state.Complete, 1, false},
		{"y", state.Pending, state.Skipped, 0, true},
		{"x", state.Pending, state.InProgress, 1, true},
		{"x", state.InProgress, state.Complete, 1, false},
		{"j", state.Pending, state.InProgress, 1, true},
		{"j", state.InProgress, state.Complete, 1, false},
		{"", state.InProgress, state.Complete, 0, true},
	}
	audit := func(steps []*store.Step, rows []row) *historyAudit {
		a := &historyAudit{rules: chaosRules}
		a.checkTask(task, steps, history(rows), decisions)
		return a
	}
	t.Run("clean", func(t *testing.T) {
		a := audit(steps(`"x"`), clean)
		require.Zero(t, a.violationCount, a.violations)
		require.Equal(t, 1, a.skippedSteps)
		require.Equal(t, 1, a.completeTasks)
	})
	t.Run("skipped a chosen branch", func(t *testing.T) {
		a := audit(steps(`"x","y"`), clean)
		require.Equal(t, 1, a.violationCount, a.violations)
		require.Contains(t, a.violations[0], "step y: ended skipped after 0 of 10 attempts")
		require.Contains(t, a.violations[0], "the branch rules say complete")
	})
	t.Run("skip not written with the decision", func(t *testing.T) {
		rows := slices.Clone(clean)
		rows[3].sameAs = false
		a := audit(steps(`"x"`), rows)
		require.Equal(t, 1, a.violationCount, a.violations)
		require.Contains(t, a.violations[0], "step y: skipped at seq 4, not in the write that settled a parent")
	})
	t.Run("ran a branch not taken", func(t *testing.T) {
		ss := steps(`"x"`)
		ss[2].State, ss[2].Attempts = state.Complete, 1
		rows := slices.Clone(clean)
		rows[3] = row{"y", state.Pending, state.InProgress, 1, true}
		rows = append(rows[:4], append([]row{{"y", state.InProgress, state.Complete, 1, false}}, rows[4:]...)...)
		a := audit(ss, rows)
		require.NotZero(t, a.violationCount)
		require.Contains(t, strings.Join(a.violations, "\n"), "step y: ended complete after 1 of 10 attempts (error <nil>); the branch rules say skipped")
	})
	t.Run("join started before the skip", func(t *testing.T) {
		rows := []row{
			{"d", state.Pending, state.InProgress, 1, false},
			{"", state.Pending, state.InProgress, 0, true},
			{"d", state.InProgress, state.Complete, 1, false},
			{"x", state.Pending, state.InProgress, 1, true},
			{"x", state.InProgress, state.Complete, 1, false},
			{"j", state.Pending, state.InProgress, 1, true},
			{"y", state.Pending, state.Skipped, 0, false},
			{"j", state.InProgress, state.Complete, 1, false},
			{"", state.InProgress, state.Complete, 0, true},
		}
		a := audit(steps(`"x"`), rows)
		joined := strings.Join(a.violations, "\n")
		require.Contains(t, joined, "step j: attempt 1 started at seq 6 before parent y completed or was skipped")
		require.Contains(t, joined, "step y: skipped at seq 7, not in the write that settled a parent")
	})
}

// TestHistoryAudit feeds the replay histories with the faults it exists to
// catch, so a green chaos or multi-coordinator run means the checks ran,
// not that they cannot fail.
func TestHistoryAudit(t *testing.T) {
	t.Parallel()
	h := cleanHistory()

	t.Run("clean", func(t *testing.T) {
		a := h.audit(chaosRules, h.transitions())
		require.Zero(t, a.violationCount, a.violations)
		require.Equal(t, 2, a.steps)
		require.Equal(t, 1, a.completeTasks)
		require.Equal(t, 3, a.dispatches)
		require.Equal(t, 1, a.redispatches)
		require.Equal(t, 1, a.lostAttempts)
		require.Equal(t, 1, a.handoffs, "lease 5 handed the task to lease 9")
	})
	// oneViolation checks that breaking the history one way is caught,
	// and said, once.
	oneViolation := func(t *testing.T, a *historyAudit, says string) {
		t.Helper()
		require.Equal(t, 1, a.violationCount, a.violations)
		require.Contains(t, a.violations[0], says)
	}
	t.Run("double completion", func(t *testing.T) {
		trs := h.transitions()
		trs = append(trs[:3], append([]*store.Transition{
			{Seq: 100, StepID: "a", StepName: "a", From: state.Complete, To: state.Complete, Attempt: 1, LeaseToken: 5},
		}, trs[3:]...)...)
		a := h.audit(chaosRules, trs)
		require.Equal(t, 1, a.doubleCompletions)
	})
	t.Run("child started before its parent completed", func(t *testing.T) {
		trs := h.transitions()
		trs[2], trs[3] = trs[3], trs[2]
		trs[2].Seq, trs[3].Seq = 3, 4
		a := h.audit(chaosRules, trs)
		oneViolation(t, a, "before parent a completed")
		require.Equal(t, 1, a.earlyStarts)
	})
	t.Run("attempt reused", func(t *testing.T) {
		trs := h.transitions()
		trs[6].Attempt = 1
		a := h.audit(chaosRules, trs)
		require.NotZero(t, a.violationCount)
		require.Contains(t, a.violations[0], "dispatched attempt 1, expected attempt 2")
	})
	t.Run("task not complete", func(t *testing.T) {
		running := *h.task
		running.State = state.InProgress
		a := h.audit(chaosRules, h.transitions()[:8], &running)
		require.NotZero(t, a.violationCount)
		require.Zero(t, a.completeTasks)
	})
	t.Run("write without a lease", func(t *testing.T) {
		trs := h.transitions()
		trs[3].LeaseToken = 0
		a := h.audit(chaosRules, trs)
		oneViolation(t, a, "written without a lease")
		require.Equal(t, 1, a.unfenced)
	})
	t.Run("write of a coordinator that lost the task", func(t *testing.T) {
		trs := h.transitions()
		trs[6].LeaseToken = 5 // the old owner dispatches after the takeover
		a := h.audit(chaosRules, trs)
		oneViolation(t, a, "written under lease 5 after it had handed the task over (now lease 9)")
		require.Equal(t, 1, a.revenantWrites)
	})
	t.Run("takeover by an older live lease", func(t *testing.T) {
		trs := h.transitions()
		for _, tr := range trs {
			tr.LeaseToken = 14 - tr.LeaseToken // 9 then 5: the survivor's lease predates the owner's
		}
		a := h.audit(chaosRules, trs)
		require.Zero(t, a.violationCount, a.violations)
		require.Equal(t, 1, a.handoffs)
	})
	t.Run("write stamped a lease lifetime before the one stored ahead of it", func(t *testing.T) {
		trs := h.transitions()
		trs[7].At = trs[6].At.Add(-3 * time.Second)
		a := h.audit(historyRules{staleAfter: 2 * time.Second}, trs)
		oneViolation(t, a, "over a lease lifetime later")
		require.Equal(t, 1, a.staleWrites)
	})
	t.Run("lost and duplicated tasks", func(t *testing.T) {
		dup := *h.task
		dup.ID = "t2"
		a := &historyAudit{}
		a.checkKeys([]*store.Task{h.task, &dup}, []expectedTask{{key: "k0", id: "t1"}, {key: "k1", id: "t3"}})
		require.Equal(t, 1, a.lost)
		require.Equal(t, 1, a.duplicates)
		require.Equal(t, 2, a.tasks)
	})
	t.Run("stored task not as submitted", func(t *testing.T) {
		a := &historyAudit{}
		a.checkKeys([]*store.Task{h.task}, []expectedTask{{key: "k0", id: "t1", check: func(*store.Task) string { return "wrong shape" }}})
		oneViolation(t, a, "key k0: wrong shape")
	})
}
