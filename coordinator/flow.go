package coordinator

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/expr"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// taskFlow is what flow control asks of one task: its concurrency keys and,
// per step, its keys and rate-limit draws, evaluated over the task's
// context once, when the task is created or loaded.
type taskFlow struct {
	keys   []admission.KeyClaim
	steps  [][]admission.KeyClaim
	tokens [][]admission.TokenClaim
}

// flowOf evaluates ct's flow control over a task's context; nil if the
// template has none. A key that does not evaluate is an error naming it.
func flowOf(ct *compiledTemplate, context []byte) (*taskFlow, error) {
	t := ct.tmpl
	has := len(t.Concurrency) > 0
	for i := range t.Steps {
		has = has || len(t.Steps[i].Concurrency) > 0 || len(t.Steps[i].RateLimits) > 0
	}
	if !has {
		return nil, nil
	}
	vars, err := expr.ParseContext(context)
	if err != nil {
		return nil, invalidf("context: %v", err)
	}
	f := &taskFlow{steps: make([][]admission.KeyClaim, len(t.Steps)), tokens: make([][]admission.TokenClaim, len(t.Steps))}
	for k, c := range t.Concurrency {
		v, err := ct.taskKeys[k].KeyFrom(vars)
		if err != nil {
			return nil, invalidf("concurrency[%d].key: %v", k, err)
		}
		f.keys = append(f.keys, admission.KeyClaim{
			Key:        taskKey(t.Namespace, t.Name, c.Key, v),
			MaxRunning: c.MaxRunning, Strategy: c.Strategy,
		})
	}
	for i := range t.Steps {
		st := &t.Steps[i]
		for k, c := range st.Concurrency {
			v, err := ct.stepKeys[i][k].KeyFrom(vars)
			if err != nil {
				return nil, invalidf("steps.%s.concurrency[%d].key: %v", st.Name, k, err)
			}
			f.steps[i] = append(f.steps[i], admission.KeyClaim{
				Key: handlerKey(st.Handler, c.Key, v), MaxRunning: c.MaxRunning, Strategy: admission.StrategyQueue,
			})
		}
		for k, u := range st.RateLimits {
			var v string
			if p := ct.limitKeys[i][k]; p != nil {
				if v, err = p.KeyFrom(vars); err != nil {
					return nil, invalidf("steps.%s.rate_limits[%d].key: %v", st.Name, k, err)
				}
			}
			f.tokens[i] = append(f.tokens[i], admission.TokenClaim{Limit: u.Name, Key: v, Units: u.Units})
		}
	}
	return f, nil
}

// loadedFlow is the flow control of a stored task. Its keys evaluated when
// it was created, so an error now means the template changed under it (it
// cannot: versions are immutable) or a bug; the task then runs without.
func loadedFlow(log *slog.Logger, ct *compiledTemplate, t *store.Task) *taskFlow {
	f, err := flowOf(ct, t.Context)
	if err != nil {
		log.Error("flow control keys of a stored task do not evaluate; it runs without them", "task_id", t.ID, "err", err)
	}
	return f
}

// taskKey names a task-level key value: the template's tasks share it,
// whatever their version.
func taskKey(ns, name, expression, value string) string {
	return fmt.Sprintf("task:%s/%s:%s=%s", ns, name, expression, value)
}

// handlerKey names a step-level key value: steps of the handler share it,
// whatever their template.
func handlerKey(handler, expression, value string) string {
	return fmt.Sprintf("handler:%s:%s=%s", handler, expression, value)
}

// gated reports whether step i's dispatch needs an admission, and the
// request if so.
func (tr *taskRun) stepAdmission(i int) *admission.Request {
	f, t := tr.flow, tr.tix(i) // an instance is admitted as its for_each step would be
	if f == nil || len(f.steps[t]) == 0 && len(f.tokens[t]) == 0 {
		return nil
	}
	s := tr.steps[i]
	return &admission.Request{
		TaskID: tr.task.ID, StepID: s.ID, Attempt: s.Attempts + 1, Priority: tr.priority(),
		Keys: f.steps[t], Tokens: f.tokens[t],
	}
}

// taskAdmission is the request that lets the task start, nil if it needs
// none.
func (tr *taskRun) taskAdmission() *admission.Request {
	if tr.flow == nil || len(tr.flow.keys) == 0 {
		return nil
	}
	return &admission.Request{TaskID: tr.task.ID, Priority: tr.priority(), Keys: tr.flow.keys}
}

// heldKeys are the concurrency keys c frees once committed: the task's when
// it ends, a step's when its attempt does.
func (c *change) heldKeys() []string {
	f := c.tr.flow
	if f == nil {
		return nil
	}
	var keys []string
	if t := c.params.Task; t != nil && t.From != t.To && !(t.To == state.Pending || t.To == state.InProgress) {
		for _, k := range f.keys {
			keys = append(keys, k.Key)
		}
		for i := range f.steps {
			for _, k := range f.steps[i] {
				keys = append(keys, k.Key)
			}
		}
	}
	for _, sc := range c.params.Steps {
		if sc.From != state.InProgress {
			continue
		}
		if i, ok := c.tr.byID[sc.StepID]; ok && !c.tr.isForEach(i) { // a for_each step holds no place; its instances do
			for _, k := range f.steps[c.tr.tix(i)] {
				keys = append(keys, k.Key)
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// admissionPrev is a step as it was before a dispatch that waits on an
// admission, so a refusal can put it back.
type admissionPrev struct {
	i    int
	step store.Step
}

// none.
func blockedAt(v *admission.Verdict, now time.Time) bool {
	return v != nil && (v.RetryAt.IsZero() || now.Before(v.RetryAt))
}

// noteGens records the release counts of a's keys before it is asked.
func (c *change) noteGens(w *admissionWaits, a *admission.Request) {
	for _, k := range a.Keys {
		if c.gens == nil {
			c.gens = map[string]uint64{}
		}
		c.gens[k.Key] = w.gen(k.Key)
	}
}

// admissionRecheck is how long a request refused for a full key waits at
// most before asking again, should the release that frees it be missed (a
// coordinator that ended a holder died before notifying the others).
const admissionRecheck = 10 * time.Second

// retryAfterPriority is how soon a request that found a place, but behind
// a waiter that goes first, asks again: that waiter's admission frees
// nothing, so no release would wake it.
const retryAfterPriority = 200 * time.Millisecond

// refused puts back in memory what the store did not write because an
// admission was refused, and records why the task or step waits. The
// caller holds tr.mu; c is committed.
func (e *engine) refused(c *change) {
	tr := c.tr
	undo := func(i int) {
		for _, p := range c.prevs {
			if p.i != i {
				continue
			}
			s := tr.steps[i]
			if s.executor != "" {
				e.pool.release(s.executor)
			}
			s.Step, s.executor = p.step, ""
			tr.sync(i)
			tr.setInFlight(i, false)
			c.dispatch = slices.DeleteFunc(c.dispatch, func(d int) bool { return d == i })
		}
	}
	now := c.params.At
	for _, r := range c.params.Refused {
		v := r.Verdict
		switch v.Reason {
		case admission.ReasonConcurrency:
			v.RetryAt = now.Add(admissionRecheck)
		case admission.ReasonPriority:
			if v.RetryAt.IsZero() { // behind a waiter for a key, not for tokens
				v.RetryAt = now.Add(retryAfterPriority)
			}
		}
		e.metrics.admissionRefusals.WithLabelValues(v.Reason, keyGroup(v.Key)).Inc()
		if r.StepID == "" {
			// Nothing of the change was written.
			tr.task.State, tr.task.UpdatedAt = c.prevTask.State, c.prevTask.UpdatedAt
			c.params.Task = nil
			for _, p := range c.prevs {
				undo(p.i)
			}
			tr.blocked = &v
			continue
		}
		if i, ok := tr.byID[r.StepID]; ok {
			undo(i)
			tr.steps[i].blocked = &v
		}
	}
}

// awaitAdmission makes what c's refusals name wait: on the key for a full
// one, asking again at once if it freed meanwhile; cancels what a key's
// strategy says to. The caller holds tr.mu; refused has run.
func (e *engine) awaitAdmission(c *change) {
	tr := c.tr
	for _, r := range c.params.Refused {
		switch {
		case r.Reason == admission.ReasonCancelled && r.StepID == "":
			e.cancelForKey(tr.task.ID, fmt.Sprintf("cancelled: concurrency key %s is full and its strategy is cancel_newest", r.Key))
			continue
		case len(r.Cancel) > 0:
			for _, id := range r.Cancel {
				e.cancelForKey(id, fmt.Sprintf("cancelled: replaced by the newer task %s on concurrency key %s (cancel_in_progress)", tr.task.ID, r.Key))
			}
		}
		// A key's refusals carry no retry time; a bucket's do.
		onKey := r.RetryAt.IsZero() && (r.Reason == admission.ReasonConcurrency || r.Reason == admission.ReasonPriority)
		if !onKey {
			continue
		}
		since := tr.task.CreatedAt
		if r.StepID != "" {
			since = c.params.At
		}
		if !e.admission.wait(r.Key, admissionWaiter{taskID: tr.task.ID, priority: tr.priority(), since: since}, c.gens[r.Key]) {
			e.askAgain(tr.task.ID)
			continue
		}
		if r.Reason == admission.ReasonPriority {
			// There is a place, and a waiter before this one: if it waits
			// here, it is woken now (the order here can differ from the
			// store's by an aging step); elsewhere, its coordinator woke it.
			key, self := r.Key, tr.task.ID
			e.bg.goFn(func() { e.passOn(key, self) })
		}
	}
}

// cancelForKey cancels a task as a concurrency key's strategy says, on
// whichever coordinator runs it, without holding any task's lock.
func (e *engine) cancelForKey(id, reason string) {
	e.bg.goFn(func() {
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		defer cancel()
		cancelTask := e.cancelAnywhere
		if cancelTask == nil {
			cancelTask = func(ctx context.Context, id, reason string) error {
				_, err := e.cancelTask(ctx, id, reason)
				return err
			}
		}
		if err := cancelTask(ctx, id, reason); err != nil {
			e.log.Warn("concurrency strategy could not cancel a task", "task_id", id, "reason", reason, "err", err)
		}
	})
}

// keysFreed wakes, for each key, the task here that waits on it longest
// (by priority, then arrival), and tells other coordinators.
func (e *engine) keysFreed(keys []string) {
	e.bg.goFn(func() {
		for _, k := range keys {
			e.keyFreed(k)
		}
	})
	if n, ok := e.store.(store.AdmissionNotifier); ok {
		e.bg.goFn(func() {
			if err := n.AdmissionNotify(e.ctx, e.id, keys); err != nil {
				e.log.Warn("could not tell other coordinators that concurrency keys freed", "keys", keys, "err", err)
			}
		})
	}
}

// keysFreedElsewhere is told of keys another coordinator freed; nil keys
// mean notifications may have been lost, so every task here waiting on a
// key asks again.
func (e *engine) keysFreedElsewhere(keys []string) {
	if keys == nil {
		e.mu.Lock()
		var ids []string
		for id, tr := range e.tasks {
			if tr.flow != nil {
				ids = append(ids, id)
			}
		}
		e.mu.Unlock()
		for _, id := range ids {
			e.askAgain(id)
		}
		return
	}
	for _, k := range keys {
		e.keyFreed(k)
	}
}

// keyFreed hands a freed place of key to the best waiter here; one that no
// longer waits passes it on.
func (e *engine) keyFreed(key string) {
	for first := true; ; first = false {
		id := e.admission.release(key, first, "")
		if id == "" || e.askAgain(id) {
			return
		}
	}
}

// passOn hands a place of key that self was refused, a waiter being before
// it, to the best other waiter here.
func (e *engine) passOn(key, self string) {
	for {
		id := e.admission.release(key, false, self)
		if id == "" || e.askAgain(id) {
			return
		}
	}
}

// askAgain clears what a task's admissions wait on and schedules it; false
// if the task is not here or waits on none.
func (e *engine) askAgain(taskID string) bool {
	tr := e.lookup(taskID)
	if tr == nil {
		return false
	}
	e.bg.goFn(func() {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if tr.done || tr.broken {
			return
		}
		tr.blocked = nil
		for _, s := range tr.steps {
			if s.blocked != nil && s.blocked.Reason == admission.ReasonConcurrency {
				s.blocked = nil
			}
		}
		c := e.newChange(tr)
		e.schedule(c, nil)
		if err := e.commit(e.ctx, c); err != nil {
			e.log.Error("dispatch after a concurrency key freed failed", "task_id", taskID, "err", err)
		}
	})
	return true
}

// keyGroup is a key without its value: what metrics are labelled with, so
// their series do not grow with customers.
func keyGroup(key string) string {
	if i := strings.LastIndexByte(key, '='); i >= 0 {
		return key[:i]
	}
	if i := strings.LastIndexByte(key, '['); i >= 0 {
		return key[:i]
	}
	return key
}

// admissionWaiter is a task waiting here for a key.
type admissionWaiter struct {
	taskID   string
	priority int
	since    time.Time
}

// admissionWaits is where refused admissions wait for a concurrency key to
// free: the tasks waiting on each key, in this coordinator. A key frees when
// a task or step holding it ends, here or on another coordinator (a
// notification through the store).
type admissionWaits struct {
	aging   time.Duration
	now     func() time.Time
	mu      sync.Mutex
	waiters map[string][]admissionWaiter
	// gens counts releases per shard of keys: a task reads its keys'
	// before asking the store, and waits only if none changed since, so a
	// release between the store's answer and the wait is never missed.
	gens [256]uint64
	seed maphash.Seed
}

func newAdmissionWaits(aging time.Duration, now func() time.Time) *admissionWaits {
	return &admissionWaits{aging: aging, now: now, waiters: map[string][]admissionWaiter{}, seed: maphash.MakeSeed()}
}

func (w *admissionWaits) shard(key string) int {
	return int(maphash.String(w.seed, key) % uint64(len(w.gens)))
}

// gen is the release count of key's shard.
func (w *admissionWaits) gen(key string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gens[w.shard(key)]
}

// wait queues a waiter on key unless key's shard saw a release since gen;
// false means the caller should ask again at once.
func (w *admissionWaits) wait(key string, a admissionWaiter, gen uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gens[w.shard(key)] != gen {
		return false
	}
	q := w.waiters[key]
	for _, o := range q {
		if o.taskID == a.taskID {
			return true
		}
	}
	w.waiters[key] = append(q, a)
	return true
}

// release takes the best waiter but except off key, by the store's order
// (priority raised by aging, then arrival); count says whether this is a
// new release or a place passed on by a waiter that does not take it.
func (w *admissionWaits) release(key string, count bool, except string) (taskID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if count {
		w.gens[w.shard(key)]++
	}
	q := w.waiters[key]
	now, best := w.now(), -1
	entry := func(a admissionWaiter) admission.Entry {
		return admission.Entry{Owner: a.taskID, Priority: a.priority, Since: a.since}
	}
	for i := range q {
		if q[i].taskID == except {
			continue
		}
		if a := entry(q[i]); best < 0 || admission.Before(&a, ptr(entry(q[best])), now, w.aging) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	taskID = q[best].taskID
	q = slices.Delete(q, best, best+1)
	if len(q) == 0 {
		delete(w.waiters, key)
	} else {
		w.waiters[key] = q
	}
	return taskID
}

// count is how many waits are queued, for the metrics.
func (w *admissionWaits) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, q := range w.waiters {
		n += len(q)
	}
	return n
}

func ptr[T any](v T) *T { return &v }
