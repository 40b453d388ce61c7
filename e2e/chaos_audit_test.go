package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/store/postgres"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/sqlite"
)

// maxListedViolations bounds how many violations the audit keeps verbatim;
// all of them are counted.
const maxListedViolations = 40

// chaosAudit is what the stored history says about a chaos run.
type chaosAudit struct {
	tasks, steps int
	// dispatches counts step transitions to in_progress.
	dispatches int
	// lost counts submitted idempotency keys with no stored task;
	// duplicates counts extra tasks stored under one key.
	lost, duplicates int
	// doubleCompletions counts transitions to complete beyond a step's
	// first.
	doubleCompletions int
	// lostAttempts counts attempts failed by the coordinator (executor lost,
	// presumed lost, timed out) rather than by a handler on purpose.
	lostAttempts int
	// maxRecovery is the longest any unfinished task waited, after a
	// coordinator kill, for its next transition.
	maxRecovery time.Duration
	// interrupted counts (task, coordinator kill) pairs where the task was
	// unfinished at the kill: the sample maxRecovery is taken over.
	interrupted int

	violationCount int
	violations     []string
}

func (a *chaosAudit) violatef(format string, args ...any) {
	a.violationCount++
	if len(a.violations) < maxListedViolations {
		a.violations = append(a.violations, fmt.Sprintf(format, args...))
	}
}

// openAuditStore opens the store the coordinator used: a SQLite file, or a
// postgres:// URL (with its search_path schema).
func openAuditStore(ctx context.Context, db, schema string) (store.Store, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return postgres.Open(ctx, postgres.Config{URL: db, Schema: schema})
	}
	return sqlite.Open(ctx, sqlite.Config{Path: db})
}

// auditStore opens the store the coordinator left and checks every task,
// step and transition in it against what was submitted. The coordinator
// must be stopped.
func auditStore(ctx context.Context, db, schema string, subs []submission, kills []time.Time) (a *chaosAudit, err error) {
	st, err := openAuditStore(ctx, db, schema)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer func() { err = errors.Join(err, st.Close()) }()

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
	a = &chaosAudit{tasks: len(tasks)}
	a.checkIdentity(tasks, subs)

	for from := 0; from < len(tasks); from += 200 {
		chunk := tasks[from:min(from+200, len(tasks))]
		ids := make([]string, len(chunk))
		for i, t := range chunk {
			ids[i] = t.ID
		}
		steps, err := st.StepList(ctx, ids...)
		if err != nil {
			return nil, fmt.Errorf("list steps: %w", err)
		}
		byTask := map[string][]*store.Step{}
		for _, s := range steps {
			byTask[s.TaskID] = append(byTask[s.TaskID], s)
		}
		for _, t := range chunk {
			trs, err := st.TransitionList(ctx, &store.TransitionListParams{TaskID: t.ID})
			if err != nil {
				return nil, fmt.Errorf("list transitions of %s: %w", t.ID, err)
			}
			a.checkTask(t, byTask[t.ID], trs)
			a.measureRecovery(t, trs, kills)
		}
	}
	return a, nil
}

// checkIdentity: every submitted key is stored exactly once, as the task
// the create returned, with the context it was given; nothing else is
// stored.
func (a *chaosAudit) checkIdentity(tasks []*store.Task, subs []submission) {
	byKey := map[string][]*store.Task{}
	for _, t := range tasks {
		byKey[t.IdentityKey] = append(byKey[t.IdentityKey], t)
	}
	submitted := map[string]bool{}
	for n, s := range subs {
		submitted[s.key] = true
		stored := byKey[s.key]
		switch {
		case len(stored) == 0:
			a.lost++
			a.violatef("task %s (create returned %s) is not stored", s.key, s.id)
			continue
		case len(stored) > 1:
			a.duplicates += len(stored) - 1
			a.violatef("key %s is stored %d times", s.key, len(stored))
		}
		if stored[0].ID != s.id {
			a.violatef("key %s: create returned task %s but the store holds %s", s.key, s.id, stored[0].ID)
		}
		if tc, err := decodeTaskContext(stored[0].Context); err != nil || tc.N != n {
			a.violatef("key %s: stored context %s is not the one submitted (n=%d, err %v)", s.key, stored[0].Context, n, err)
		}
	}
	for key, ts := range byKey {
		if !submitted[key] {
			a.violatef("task %s with key %q was never submitted", ts[0].ID, key)
		}
	}
}

// checkTask replays one task's history: every transition legal and
// continuing from the last, every step complete exactly once, attempts
// numbered 1, 2, ... up to the limit, no attempt started before all its
// parents completed, and the task completed once, after its steps.
func (a *chaosAudit) checkTask(t *store.Task, steps []*store.Step, trs []*store.Transition) {
	byStep := map[string][]*store.Transition{}
	var taskTrs []*store.Transition
	for _, tr := range trs {
		if tr.StepID == "" {
			taskTrs = append(taskTrs, tr)
			continue
		}
		byStep[tr.StepID] = append(byStep[tr.StepID], tr)
	}
	completedAt := map[string]int64{} // step name -> seq of its first completion
	var lastStepComplete int64
	for _, s := range steps {
		a.steps++
		where := fmt.Sprintf("task %s (%s/%s) step %s", t.ID, t.Namespace, t.Name, s.Name)
		prev, completes, nextAttempt := state.Pending, 0, 1
		for _, tr := range byStep[s.ID] {
			if tr.From != prev {
				a.violatef("%s: seq %d goes %s->%s but the step was %s", where, tr.Seq, tr.From, tr.To, prev)
			}
			if state.StepTransition(tr.From, tr.To) != state.Applied {
				a.violatef("%s: seq %d is an illegal transition %s->%s", where, tr.Seq, tr.From, tr.To)
			}
			switch tr.To {
			case state.InProgress:
				a.dispatches++
				if tr.Attempt != nextAttempt {
					a.violatef("%s: seq %d dispatched attempt %d, expected attempt %d", where, tr.Seq, tr.Attempt, nextAttempt)
				}
				if tr.Attempt > s.MaxAttempts {
					a.violatef("%s: seq %d dispatched attempt %d above max_attempts %d", where, tr.Seq, tr.Attempt, s.MaxAttempts)
				}
				nextAttempt = tr.Attempt + 1
			case state.Complete:
				completes++
				if completes == 1 {
					completedAt[s.Name] = tr.Seq
					lastStepComplete = max(lastStepComplete, tr.Seq)
				} else {
					a.doubleCompletions++
					a.violatef("%s: completed again at seq %d (attempt %d, %q)", where, tr.Seq, tr.Attempt, tr.Reason)
				}
			case state.Error:
				if !strings.Contains(tr.Reason, "fails on purpose") {
					a.lostAttempts++
				}
			}
			prev = tr.To
		}
		if prev != s.State {
			a.violatef("%s: stored state %s but its transitions end at %s", where, s.State, prev)
		}
		if s.State != state.Complete {
			a.violatef("%s: ended %s after %d of %d attempts (error %+v)", where, s.State, s.Attempts, s.MaxAttempts, s.Error)
		}
		if s.MaxAttempts != chaosRetryLimit {
			a.violatef("%s: max_attempts %d, template says %d", where, s.MaxAttempts, chaosRetryLimit)
		}
		if s.Attempts > s.MaxAttempts {
			a.violatef("%s: %d attempts above max_attempts %d", where, s.Attempts, s.MaxAttempts)
		}
		if s.Attempts != nextAttempt-1 {
			a.violatef("%s: stored attempts %d but %d dispatches recorded", where, s.Attempts, nextAttempt-1)
		}
	}
	for _, s := range steps {
		for _, tr := range byStep[s.ID] {
			if tr.To != state.InProgress {
				continue
			}
			for _, p := range s.DependsOn {
				if seq, ok := completedAt[p]; !ok || seq > tr.Seq {
					a.violatef("task %s step %s: attempt %d started at seq %d before parent %s completed (seq %d)", t.ID, s.Name, tr.Attempt, tr.Seq, p, seq)
				}
			}
		}
	}

	prev, completes := state.Pending, 0
	for _, tr := range taskTrs {
		if tr.From != prev {
			a.violatef("task %s: seq %d goes %s->%s but the task was %s", t.ID, tr.Seq, tr.From, tr.To, prev)
		}
		if state.TaskTransition(tr.From, tr.To) != state.Applied {
			a.violatef("task %s: seq %d is an illegal transition %s->%s", t.ID, tr.Seq, tr.From, tr.To)
		}
		if tr.To == state.Complete {
			completes++
			if tr.Seq < lastStepComplete {
				a.violatef("task %s: completed at seq %d before its last step completed (seq %d)", t.ID, tr.Seq, lastStepComplete)
			}
		}
		prev = tr.To
	}
	if prev != t.State {
		a.violatef("task %s: stored state %s but its transitions end at %s", t.ID, t.State, prev)
	}
	if t.State != state.Complete || completes != 1 || t.CompletedAt.IsZero() {
		a.violatef("task %s (%s/%s): state %s, %d completions, completed_at %v", t.ID, t.Namespace, t.Name, t.State, completes, t.CompletedAt)
	}
}

// recoveryWindow is how long after a coordinator kill a newly created task
// still counts as waiting on the recovery: a task created just after the
// restart, before any executor is back, waits on the kill too.
const recoveryWindow = 5 * time.Second

// measureRecovery: for each coordinator kill, a task unfinished at that
// moment, or created within recoveryWindow after it, waited from the kill
// (or its creation, if later) until its next transition.
func (a *chaosAudit) measureRecovery(t *store.Task, trs []*store.Transition, kills []time.Time) {
	for _, k := range kills {
		from := k
		if !t.CreatedAt.Before(k) {
			if t.CreatedAt.Sub(k) > recoveryWindow {
				continue
			}
			from = t.CreatedAt
		}
		var next time.Time
		finished := false
		for _, tr := range trs {
			if tr.At.Before(from) || (from.Equal(k) && tr.At.Equal(k)) {
				if tr.StepID == "" && tr.To != state.Pending && tr.To != state.InProgress {
					finished = true
				}
				continue
			}
			next = tr.At
			break
		}
		if finished || next.IsZero() {
			continue
		}
		a.interrupted++
		a.maxRecovery = max(a.maxRecovery, next.Sub(from))
	}
}

// TestChaosAudit feeds the audit histories with the faults it exists to
// catch, so a green chaos run means the checks ran, not that they cannot
// fail.
func TestChaosAudit(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	task := &store.Task{ID: "t1", Namespace: "chaos", Name: "pair", State: state.Complete, IdentityKey: "k0",
		Context: json.RawMessage(`{"seed":"1","n":0}`), CreatedAt: at, CompletedAt: at.Add(time.Second)}
	steps := []*store.Step{
		{ID: "a", Name: "a", State: state.Complete, Attempts: 1, MaxAttempts: chaosRetryLimit},
		{ID: "b", Name: "b", DependsOn: []string{"a"}, State: state.Complete, Attempts: 2, MaxAttempts: chaosRetryLimit},
	}
	var seq int64
	tr := func(step string, from, to state.State, attempt int, reason string) *store.Transition {
		seq++
		return &store.Transition{Seq: seq, TaskID: "t1", StepID: step, StepName: step, From: from, To: to,
			At: at.Add(time.Duration(seq) * 100 * time.Millisecond), Attempt: attempt, Reason: reason}
	}
	clean := func() []*store.Transition {
		seq = 0
		return []*store.Transition{
			tr("a", state.Pending, state.InProgress, 1, "dispatched"),
			tr("", state.Pending, state.InProgress, 0, "first step dispatched"),
			tr("a", state.InProgress, state.Complete, 1, "attempt 1 succeeded"),
			tr("b", state.Pending, state.InProgress, 1, "dispatched"),
			tr("b", state.InProgress, state.Error, 1, "attempt 1 of 10 failed: executor exec-1 was lost"),
			tr("b", state.Error, state.Pending, 1, "retrying"),
			tr("b", state.Pending, state.InProgress, 2, "dispatched"),
			tr("b", state.InProgress, state.Complete, 2, "attempt 2 succeeded"),
			tr("", state.InProgress, state.Complete, 0, "all steps complete"),
		}
	}

	a := &chaosAudit{}
	a.checkTask(task, steps, clean())
	a.measureRecovery(task, clean(), []time.Time{at.Add(250 * time.Millisecond)})
	require.Zero(t, a.violationCount, a.violations)
	require.Equal(t, 2, a.steps)
	require.Equal(t, 3, a.dispatches)
	require.Equal(t, 1, a.lostAttempts)
	require.Equal(t, 50*time.Millisecond, a.maxRecovery, "the kill at 250ms was followed by seq 3 at 300ms")
	require.Equal(t, 1, a.interrupted)

	t.Run("recovery of a task created after the kill", func(t *testing.T) {
		late := *task
		late.CreatedAt = at.Add(time.Second)
		trs := clean()
		for _, tr := range trs {
			tr.At = tr.At.Add(time.Second + 600*time.Millisecond) // first dispatch 700ms after creation
		}
		a := &chaosAudit{}
		a.measureRecovery(&late, trs, []time.Time{at.Add(900 * time.Millisecond), at.Add(-time.Minute)})
		require.Equal(t, 1, a.interrupted, "the kill a minute before creation is not this task's recovery")
		require.Equal(t, 700*time.Millisecond, a.maxRecovery)
	})

	t.Run("double completion", func(t *testing.T) {
		trs := clean()
		trs = append(trs[:3], append([]*store.Transition{
			{Seq: 100, StepID: "a", From: state.Complete, To: state.Complete, Attempt: 1},
		}, trs[3:]...)...)
		a := &chaosAudit{}
		a.checkTask(task, steps, trs)
		require.Equal(t, 1, a.doubleCompletions)
	})
	t.Run("child started before its parent completed", func(t *testing.T) {
		trs := clean()
		trs[2], trs[3] = trs[3], trs[2]
		trs[2].Seq, trs[3].Seq = 3, 4
		a := &chaosAudit{}
		a.checkTask(task, steps, trs)
		require.Equal(t, 1, a.violationCount, a.violations)
		require.Contains(t, a.violations[0], "before parent a completed")
	})
	t.Run("attempt reused", func(t *testing.T) {
		trs := clean()
		trs[6].Attempt = 1
		a := &chaosAudit{}
		a.checkTask(task, steps, trs)
		require.NotZero(t, a.violationCount)
		require.Contains(t, a.violations[0], "dispatched attempt 1, expected attempt 2")
	})
	t.Run("task not complete", func(t *testing.T) {
		errored := *task
		errored.State = state.InProgress
		a := &chaosAudit{}
		a.checkTask(&errored, steps, clean()[:8])
		require.NotZero(t, a.violationCount)
	})
	t.Run("lost and duplicated tasks", func(t *testing.T) {
		dup := *task
		dup.ID = "t2"
		a := &chaosAudit{}
		a.checkIdentity([]*store.Task{task, &dup}, []submission{{key: "k0", id: "t1"}, {key: "k1", id: "t3"}})
		require.Equal(t, 1, a.lost)
		require.Equal(t, 1, a.duplicates)
	})
}

// taskContext is the context each chaos task carries, kept in a type so
// its shape is documented in one place.
type taskContext struct {
	Seed string `json:"seed"`
	N    int    `json:"n"`
}

// decodeTaskContext reads a stored task context.
func decodeTaskContext(raw json.RawMessage) (taskContext, error) {
	var tc taskContext
	err := json.Unmarshal(raw, &tc)
	return tc, err
}
