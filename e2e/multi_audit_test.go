//go:build unix

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/postgres"
)

// multiAudit is what the shared store says about a multi-coordinator run.
type multiAudit struct {
	tasks, completeTasks, steps int
	// lost counts submitted keys with no stored task; duplicates counts
	// extra tasks under one key.
	lost, duplicates int
	// doubleCompletions counts transitions to complete beyond a step's (or
	// a task's) first.
	doubleCompletions int
	// earlyStarts counts dispatches (transitions to in_progress) stored
	// before one of the step's parents had completed.
	earlyStarts int
	// staleWrites counts transitions stored after another of the same task
	// that is later by more than a lease lifetime: a write prepared before
	// its coordinator stalled, committed after the task could have been
	// taken over. The fence must refuse those.
	staleWrites int
	// redispatches counts attempts after a step's first: attempts whose
	// result went to a coordinator that no longer owned the task, or that
	// were presumed lost after a takeover.
	redispatches int

	violationCount int
	violations     []string
}

func (a *multiAudit) violatef(format string, args ...any) {
	a.violationCount++
	if len(a.violations) < maxMultiViolations {
		a.violations = append(a.violations, fmt.Sprintf(format, args...))
	}
}

// maxMultiViolations bounds the violations kept verbatim; all are counted.
const maxMultiViolations = 40

// multiAuditStore opens the run's schema with the PostgreSQL driver and
// checks every task, step and transition against what was submitted.
func multiAuditStore(ctx context.Context, url, schema string, subs []multiSubmission) (a *multiAudit, err error) {
	st, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: schema, MaxConns: 4})
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
	a = &multiAudit{tasks: len(tasks)}
	a.checkKeys(tasks, subs)

	const chunk = 200
	for from := 0; from < len(tasks); from += chunk {
		part := tasks[from:min(from+chunk, len(tasks))]
		ids := make([]string, len(part))
		for i, t := range part {
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
		for _, t := range part {
			trs, err := st.TransitionList(ctx, &store.TransitionListParams{TaskID: t.ID})
			if err != nil {
				return nil, fmt.Errorf("list transitions of %s: %w", t.ID, err)
			}
			a.checkTask(t, byTask[t.ID], trs)
		}
	}
	return a, nil
}

// checkKeys: every submitted key is stored exactly once, as the task the
// create answered with, and nothing else is stored.
func (a *multiAudit) checkKeys(tasks []*store.Task, subs []multiSubmission) {
	byKey := map[string][]*store.Task{}
	for _, t := range tasks {
		byKey[t.IdentityKey] = append(byKey[t.IdentityKey], t)
	}
	submitted := map[string]bool{}
	for _, s := range subs {
		submitted[s.key] = true
		stored := byKey[s.key]
		switch {
		case len(stored) == 0:
			a.lost++
			a.violatef("key %s (create answered task %s) is not stored", s.key, s.id)
			continue
		case len(stored) > 1:
			a.duplicates += len(stored) - 1
			a.violatef("key %s is stored %d times", s.key, len(stored))
		}
		if stored[0].ID != s.id || stored[0].Name != s.shape {
			a.violatef("key %s: create answered task %s (%s) but the store holds %s (%s)", s.key, s.id, s.shape, stored[0].ID, stored[0].Name)
		}
	}
	for key, ts := range byKey {
		if !submitted[key] {
			a.violatef("task %s with key %q was never submitted", ts[0].ID, key)
		}
	}
}

// checkTask replays one task's history: each step's transitions continue
// from one another and end complete, completing once; no attempt starts
// before every parent completed; the task completes once, after its
// steps; and no transition is older than one stored before it by more than
// a lease lifetime.
func (a *multiAudit) checkTask(t *store.Task, steps []*store.Step, trs []*store.Transition) {
	where := fmt.Sprintf("task %s (%s)", t.ID, t.Name)
	if t.State == state.Complete {
		a.completeTasks++
	} else {
		a.violatef("%s ended %s", where, t.State)
	}
	byName := map[string]*store.Step{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	prev := map[string]state.State{}  // step id ("" for the task) -> last state
	completedAt := map[string]int64{} // step name -> seq of its first completion
	var latest time.Time
	var lastStepComplete, taskCompletes int64
	for _, tr := range trs {
		if tr.At.Before(latest.Add(-multiLeaseTTL)) {
			a.staleWrites++
			a.violatef("%s: seq %d (%s %s->%s at %s) was stored after a transition at %s, over a lease lifetime later",
				where, tr.Seq, tr.StepName, tr.From, tr.To, tr.At.Format(time.RFC3339Nano), latest.Format(time.RFC3339Nano))
		}
		if tr.At.After(latest) {
			latest = tr.At
		}
		from, ok := prev[tr.StepID]
		if !ok {
			from = state.Pending
		}
		if tr.From != from {
			a.violatef("%s %s: seq %d goes %s->%s but it was %s", where, tr.StepName, tr.Seq, tr.From, tr.To, from)
		}
		prev[tr.StepID] = tr.To
		if tr.StepID == "" {
			if tr.To == state.Complete {
				taskCompletes++
				if taskCompletes > 1 {
					a.doubleCompletions++
					a.violatef("%s: completed again at seq %d", where, tr.Seq)
				}
				if tr.Seq < lastStepComplete {
					a.violatef("%s: completed at seq %d before its last step completed at seq %d", where, tr.Seq, lastStepComplete)
				}
			}
			continue
		}
		switch tr.To {
		case state.InProgress:
			if tr.Attempt > 1 {
				a.redispatches++
			}
			s := byName[tr.StepName]
			if s == nil {
				a.violatef("%s: seq %d names unknown step %s", where, tr.Seq, tr.StepName)
				continue
			}
			for _, p := range s.DependsOn {
				if done, ok := completedAt[p]; !ok || done > tr.Seq {
					a.earlyStarts++
					a.violatef("%s %s: attempt %d started at seq %d before parent %s completed", where, tr.StepName, tr.Attempt, tr.Seq, p)
				}
			}
		case state.Complete:
			if _, again := completedAt[tr.StepName]; again {
				a.doubleCompletions++
				a.violatef("%s %s: completed again at seq %d (attempt %d, %q)", where, tr.StepName, tr.Seq, tr.Attempt, tr.Reason)
				continue
			}
			completedAt[tr.StepName] = tr.Seq
			lastStepComplete = max(lastStepComplete, tr.Seq)
		}
	}
	for _, s := range steps {
		a.steps++
		if s.State != state.Complete {
			a.violatef("%s %s: ended %s after %d of %d attempts (error %+v)", where, s.Name, s.State, s.Attempts, s.MaxAttempts, s.Error)
		}
		if got := prev[s.ID]; got != s.State {
			a.violatef("%s %s: stored state %s but its transitions end at %s", where, s.Name, s.State, got)
		}
	}
	if t.State == state.Complete && taskCompletes == 0 {
		a.violatef("%s: complete without a transition to complete", where)
	}
}

// scrapeMetrics reads a coordinator's /metrics and returns its unlabelled
// samples by name.
func scrapeMetrics(ctx context.Context, httpAddr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
