package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tasker-go/tasker/analytics"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// Bounds of one GetAnalytics call's work. A window holding more finished
// tasks than these allow is measured over its latest part: the newest
// tasks, with the window's start moved forward to the oldest of them, so
// every number stays exact for the window the answer names.
const (
	// analyticsMaxTasks caps the tasks one call measures. Ten thousand
	// tasks of a six-step template read about 200,000 transitions, a
	// fraction of a second on either store.
	analyticsMaxTasks = 10_000
	// analyticsMaxSteps caps tasks × steps per task, so a template with
	// hundreds of steps is measured over fewer tasks rather than reading
	// millions of transitions.
	analyticsMaxSteps = 200_000
	// analyticsChunk is how many tasks' steps and transitions are read and
	// measured at a time; only their durations are kept after that.
	analyticsChunk = 500
)

// analyticsParams is a validated GetAnalytics request.
type analyticsParams struct {
	namespace, name, version string
	since, until             time.Time
	// maxTasks and maxSteps bound the work (analyticsMaxTasks,
	// analyticsMaxSteps); tests lower them.
	maxTasks, maxSteps int
}

// analytics measures the template's tasks that finished in the window. The
// template (the given version, or the latest) names the steps and their
// order; an unknown one is NotFound.
func (e *engine) analytics(ctx context.Context, p *analyticsParams) (*analytics.Report, error) {
	ct, err := e.templates.get(ctx, p.namespace, p.name, p.version)
	if err != nil {
		return nil, err
	}
	order := make([]string, len(ct.tmpl.Steps))
	for i, s := range ct.tmpl.Steps {
		order[i] = s.Name
	}
	limit := max(1, min(p.maxTasks, p.maxSteps/max(1, len(order))))
	tasks, err := e.store.TaskListFinished(ctx, &store.TaskListFinishedParams{
		Namespace: p.namespace, Name: p.name, Version: p.version,
		Since: p.since, Until: p.until, Limit: limit + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("analytics of %s/%s: %w", p.namespace, p.name, err)
	}
	tasks, since := latestPart(tasks, p.since, limit)
	acc := analytics.New(since, p.until, order)
	for chunk := range slices.Chunk(tasks, analyticsChunk) {
		if err := e.measure(ctx, acc, chunk); err != nil {
			return nil, fmt.Errorf("analytics of %s/%s: %w", p.namespace, p.name, err)
		}
	}
	return acc.Report(), nil
}

// latestPart keeps at most limit of tasks (finished tasks, latest first)
// and says where the window they fill starts. When there are more, the
// window starts just after the finish of the first task left out, so
// tasks that finished at that same instant are left out with it and the
// window holds exactly the tasks kept.
func latestPart(tasks []*store.Task, since time.Time, limit int) ([]*store.Task, time.Time) {
	if len(tasks) <= limit {
		return tasks, since
	}
	cut := tasks[limit].UpdatedAt
	n := limit
	for n > 0 && !tasks[n-1].UpdatedAt.After(cut) {
		n--
	}
	return tasks[:n], cut.Add(time.Nanosecond)
}

// measure reads the transitions of a chunk of tasks and adds each task to
// acc. A task's DAG is its pinned template version's (cached); its steps
// are read only for the tasks with a failure, for the failures' classes.
func (e *engine) measure(ctx context.Context, acc *analytics.Accumulator, tasks []*store.Task) error {
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.ID
	}
	trs, err := e.store.TransitionListTasks(ctx, ids...)
	if err != nil {
		return err
	}
	trsOf := map[string][]*store.Transition{}
	var failing []string
	for _, tr := range trs {
		if tr.StepID != "" && tr.To == state.Error && (len(failing) == 0 || failing[len(failing)-1] != tr.TaskID) {
			failing = append(failing, tr.TaskID)
		}
		trsOf[tr.TaskID] = append(trsOf[tr.TaskID], tr)
	}
	lastErr := map[string]*store.StepError{}
	if len(failing) > 0 {
		steps, err := e.store.StepList(ctx, failing...)
		if err != nil {
			return err
		}
		for _, s := range steps {
			if s.Error != nil {
				lastErr[s.ID] = s.Error
			}
		}
	}
	dags := map[string][]analytics.Step{}
	for _, t := range tasks {
		dag, ok := dags[t.Version]
		if !ok {
			ct, err := e.templates.get(ctx, t.Namespace, t.Name, t.Version)
			if err != nil {
				return err
			}
			for _, s := range ct.tmpl.Steps {
				dag = append(dag, analytics.Step{Name: s.Name, DependsOn: s.DependsOn})
			}
			dags[t.Version] = dag
		}
		acc.Add(analyticsTask(t, dag, trsOf[t.ID], lastErr))
	}
	return nil
}

// analyticsTask is a stored task as analytics measures it, with the DAG of
// its template version. The failure of an attempt is read from its
// transition: the message and the retry's due time from the reason the
// engine wrote (see failureReason), the class from the step's stored error
// (lastErr, by step ID) when that is the same failure: the store keeps only
// a step's last error, and clears it when the step completes.
func analyticsTask(t *store.Task, dag []analytics.Step, trs []*store.Transition, lastErr map[string]*store.StepError) *analytics.Task {
	out := &analytics.Task{
		ID: t.ID, State: t.State, CreatedAt: t.CreatedAt, FinishedAt: t.UpdatedAt,
		Steps: dag, Transitions: make([]analytics.Transition, len(trs)),
	}
	for i, tr := range trs {
		at := analytics.Transition{From: tr.From, To: tr.To, At: tr.At, Attempt: tr.Attempt}
		if tr.StepID != "" {
			at.Step = tr.StepName
			if tr.To == state.Error {
				failureOf(tr, lastErr[tr.StepID], &at)
			}
		}
		out.Transitions[i] = at
	}
	return out
}

// failureOf reads what failed on a failed attempt's transition into at:
// from its metadata (failureMeta), or, for history written before the
// metadata carried it, from the reason text and the step's stored error.
func failureOf(tr *store.Transition, lastErr *store.StepError, at *analytics.Transition) {
	var meta failureMeta
	if len(tr.Metadata) > 0 && json.Unmarshal(tr.Metadata, &meta) == nil && meta.Error != "" {
		at.Message, at.Class = meta.Error, meta.ErrorClass
		if meta.RetryAt != "" {
			if t, err := time.Parse(time.RFC3339Nano, meta.RetryAt); err == nil {
				at.RetryAt = t
			}
		}
		return
	}
	msg, retryIn, retrying := parseFailureReason(tr.Reason)
	at.Message = msg
	if retrying {
		at.RetryAt = tr.At.Add(retryIn)
	}
	if lastErr != nil && lastErr.Message == msg {
		at.Class = lastErr.Class
	}
}

// parseFailureReason reads back what failureReason wrote on a failed
// attempt's transition: the failure's message and, when a retry was
// scheduled, the delay before it (to the millisecond). A reason in no form
// it knows is all message.
func parseFailureReason(reason string) (msg string, retryIn time.Duration, retrying bool) {
	head, msg, ok := strings.Cut(reason, ": ")
	if !ok || !strings.HasPrefix(head, "attempt ") {
		return reason, 0, false
	}
	if _, after, ok := strings.Cut(head, ", retrying in "); ok {
		if d, err := time.ParseDuration(after); err == nil {
			return msg, d, true
		}
	}
	return msg, 0, false
}
