package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// analyticsTemplate has a step that fails as often as its task's context
// says: fetch → {charge, notify} → finish.
const analyticsTemplate = `
namespace: shop
name: checkout
version: %s
description: %s
steps:
  - name: fetch
    handler: noop
  - name: charge
    handler: charge
    depends_on: [fetch]
    retry_limit: 3
  - name: notify
    handler: sleep
    depends_on: [fetch]
    config: {ms: 3}
  - name: finish
    handler: noop
    depends_on: [charge, notify]
`

// chargeBackoff is the retry delay charge asks for, exactly what the
// coordinator waits (a requested backoff has no jitter).
const chargeBackoff = 20 * time.Millisecond

// failure is one failed attempt as the handler returned it.
type failure struct{ message, class string }

// chargeHandler fails the first context.fails attempts ("card declined",
// then "gateway timeout"), retryable after chargeBackoff (or context.
// backoff_ms), or fails permanently with "card stolen" when
// context.permanent is set. It records every failure it returns.
func chargeHandler() (executor.HandlerFunc, func() map[failure]int) {
	var mu sync.Mutex
	seen := map[failure]int{}
	h := func(_ context.Context, req *executor.Request) (any, error) {
		var c struct {
			Fails     int  `json:"fails"`
			Permanent bool `json:"permanent"`
			BackoffMs int  `json:"backoff_ms"`
		}
		if err := json.Unmarshal(req.Context, &c); err != nil {
			return nil, err
		}
		f := failure{"card declined", "Declined"}
		if req.Attempt > 1 {
			f = failure{"gateway timeout", "Timeout"}
		}
		var err error
		switch {
		case c.Permanent:
			f = failure{"card stolen", "Fraud"}
			err = executor.Permanent(executor.WithClass(fmt.Errorf("%s", f.message), f.class))
		case req.Attempt <= c.Fails:
			backoff := chargeBackoff
			if c.BackoffMs > 0 {
				backoff = time.Duration(c.BackoffMs) * time.Millisecond
			}
			err = executor.RetryAfter(executor.WithClass(fmt.Errorf("%s", f.message), f.class), backoff)
		default:
			return map[string]any{"charged": true}, nil
		}
		mu.Lock()
		seen[f]++
		mu.Unlock()
		return nil, err
	}
	return h, func() map[failure]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[failure]int{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

// TestAnalyticsMatchesWhatTheTasksRecord runs tasks of a template with a
// flaky step through a real coordinator and executor (too few slots for
// them all, so steps also wait for a slot), and checks every number
// GetAnalytics gives against the same numbers the test computes itself
// from GetTask, and the failures against what the handler returned.
func TestAnalyticsMatchesWhatTheTasksRecord(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	charge, failures := chargeHandler()
	h.startExecutor(3, map[string]executor.HandlerFunc{"charge": charge})
	h.apply(fmt.Sprintf(analyticsTemplate, "1.0.0", "first"))
	h.apply(fmt.Sprintf(analyticsTemplate, "2.0.0", "second"))
	h.apply(`
namespace: shop
name: other
version: 1.0.0
steps:
  - name: only
    handler: noop
`)
	// Wall clock readings (no monotonic part), as the coordinator sees them.
	since := time.Now().Round(0)

	var v1, v2 []string
	for i := range 12 {
		// 0 to 2 failures complete after retries; 3 exhaust the step.
		v1 = append(v1, h.create("shop", "checkout", map[string]any{"n": i, "fails": i % 4}, version("1.0.0")).GetId())
	}
	v1 = append(v1, h.create("shop", "checkout", map[string]any{"permanent": true}, version("1.0.0")).GetId())
	// One is cancelled while charge waits an hour for its retry.
	waiting := h.create("shop", "checkout", map[string]any{"fails": 3, "backoff_ms": 3_600_000}, version("1.0.0")).GetId()
	v1 = append(v1, waiting)
	require.Eventually(t, func() bool {
		s := step(h.get(waiting), "charge")
		return s.GetState() == coordinatorv1.State_STATE_ERROR && s.GetAttempts() == 1
	}, 20*time.Second, 5*time.Millisecond)
	_, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: waiting})
	require.NoError(t, err)
	for i := range 2 {
		v2 = append(v2, h.create("shop", "checkout", map[string]any{"n": i}, version("2.0.0")).GetId())
	}
	other := h.create("shop", "other", map[string]any{}).GetId()

	// Every task finished, and no step of an errored one still running:
	// nothing changes after this.
	byID := map[string]*coordinatorv1.Task{}
	for _, id := range append(append(slices.Clone(v1), v2...), other) {
		var task *coordinatorv1.Task
		require.Eventually(t, func() bool {
			task = h.get(id)
			return quiet(task)
		}, 20*time.Second, 5*time.Millisecond, "task %s", id)
		byID[id] = task
	}
	until := time.Now().Round(0).Add(time.Millisecond)
	tasksOf := func(ids ...[]string) []*coordinatorv1.Task {
		var out []*coordinatorv1.Task
		for _, group := range ids {
			for _, id := range group {
				out = append(out, byID[id])
			}
		}
		return out
	}

	get := func(req *coordinatorv1.GetAnalyticsRequest) *coordinatorv1.TemplateAnalytics {
		t.Helper()
		resp, err := h.client.GetAnalytics(h.ctx, req)
		require.NoError(t, err)
		return resp.GetAnalytics()
	}
	window := func(version string) *coordinatorv1.GetAnalyticsRequest {
		return &coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout", Version: version,
			Since: timestamppb.New(since), Until: timestamppb.New(until)}
	}
	order := []string{"fetch", "charge", "notify", "finish"}

	got := get(window("1.0.0"))
	for _, s := range got.GetSteps() {
		t.Logf("%-6s attempts %2d retries %d failures %d running p50 %-10s queue p50 %-10s p95 %-10s path share %.3f",
			s.GetName(), s.GetAttempts(), s.GetRetries(), s.GetFailures(), s.GetRunning().GetP50().AsDuration(),
			s.GetQueueWait().GetP50().AsDuration(), s.GetQueueWait().GetP95().AsDuration(), s.GetCriticalPathShare())
	}
	t.Logf("bottleneck %s (%.3f), duration p50 %s p99 %s, retry rate %.3f, top errors %v", got.GetBottleneckStep(),
		got.GetBottleneckShare(), got.GetDuration().GetP50().AsDuration(), got.GetDuration().GetP99().AsDuration(),
		got.GetRetryRate(), got.GetTopErrors())
	want := measure(t, tasksOf(v1), order)
	requireAnalytics(t, want, got, since, until)
	require.EqualValues(t, 14, got.GetTasksFinished())
	require.EqualValues(t, 9, got.GetCompleted(), "three with no failure, six after retries")
	require.EqualValues(t, 4, got.GetErrored(), "three out of attempts, one permanent")
	require.EqualValues(t, 1, got.GetCancelled())

	// The failures are those the handler returned, each with its class.
	wantErrors := map[failure]int{}
	for f, n := range failures() {
		wantErrors[f] = n
	}
	gotErrors := map[failure]int{}
	for _, e := range got.GetTopErrors() {
		require.Equal(t, "charge", e.GetStepName())
		gotErrors[failure{e.GetMessage(), e.GetErrorClass()}] = int(e.GetCount())
	}
	require.Equal(t, wantErrors, gotErrors)
	require.Equal(t, "card declined", got.GetTopErrors()[0].GetMessage(), "the most frequent first")

	// Without a version: both versions' tasks, not the other template's.
	all := get(window(""))
	requireAnalytics(t, measure(t, tasksOf(v1, v2), order), all, since, until)
	require.EqualValues(t, 16, all.GetTasksFinished())
	requireAnalytics(t, measure(t, tasksOf(v2), order), get(window("2.0.0")), since, until)

	// The default window, the last 24 hours, holds them all.
	def := get(&coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout"})
	require.EqualValues(t, 16, def.GetTasksFinished())
	require.Equal(t, 24*time.Hour, def.GetUntil().AsTime().Sub(def.GetSince().AsTime()))

	// A window that ends before the first task finished holds none.
	empty := get(&coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout",
		Since: timestamppb.New(since.Add(-time.Hour)), Until: timestamppb.New(since)})
	require.Zero(t, empty.GetTasksFinished())
	require.Empty(t, empty.GetBottleneckStep())
	require.Len(t, empty.GetSteps(), 4, "every step is listed, with zeros")
}

func version(v string) func(*coordinatorv1.CreateTaskRequest) {
	return func(r *coordinatorv1.CreateTaskRequest) { r.Version = v }
}

// quiet reports whether a task is finished with none of its steps running.
func quiet(t *coordinatorv1.Task) bool {
	switch t.GetState() {
	case coordinatorv1.State_STATE_PENDING, coordinatorv1.State_STATE_IN_PROGRESS:
		return false
	}
	for _, s := range t.GetSteps() {
		if s.GetState() == coordinatorv1.State_STATE_IN_PROGRESS {
			return false
		}
	}
	return true
}

// measured is what the test computes from GetTask results.
type measured struct {
	finished, completed, errored, cancelled int
	durations                               []time.Duration
	steps                                   map[string]*stepMeasured
	pathTotal                               time.Duration
	attempts, retries                       int
}

type stepMeasured struct {
	running, queue              []time.Duration
	attempts, retries, failures int
	path                        time.Duration
}

// measure computes, from tasks as GetTask shows them, what GetAnalytics
// should answer. It knows the scenario: no operator acted on a task, and
// every retry was due chargeBackoff after the failure before it.
func measure(t *testing.T, tasks []*coordinatorv1.Task, order []string) *measured {
	t.Helper()
	m := &measured{steps: map[string]*stepMeasured{}}
	for _, name := range order {
		m.steps[name] = &stepMeasured{}
	}
	for _, task := range tasks {
		m.finished++
		switch task.GetState() {
		case coordinatorv1.State_STATE_COMPLETE:
			m.completed++
		case coordinatorv1.State_STATE_ERROR:
			m.errored++
		case coordinatorv1.State_STATE_CANCELLED:
			m.cancelled++
		}
		created := task.GetCreatedAt().AsTime()
		m.durations = append(m.durations, task.GetUpdatedAt().AsTime().Sub(created))
		done := map[string]time.Time{}
		for _, s := range task.GetSteps() {
			for _, tr := range s.GetTransitions() {
				if to := tr.GetToState(); to == coordinatorv1.State_STATE_COMPLETE || to == coordinatorv1.State_STATE_RESOLVED_MANUALLY {
					done[s.GetName()] = tr.GetAt().AsTime()
				}
			}
		}
		for _, s := range task.GetSteps() {
			sm := m.steps[s.GetName()]
			var dispatched, failed time.Time
			for _, tr := range s.GetTransitions() {
				at := tr.GetAt().AsTime()
				switch {
				case tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS:
					sm.attempts++
					m.attempts++
					ready := created
					if tr.GetAttempt() > 1 {
						sm.retries++
						m.retries++
						ready = failed.Add(chargeBackoff)
					} else {
						for _, p := range s.GetDependsOn() {
							if done[p].After(ready) {
								ready = done[p]
							}
						}
					}
					sm.queue = append(sm.queue, at.Sub(ready))
					dispatched = at
				case tr.GetFromState() == coordinatorv1.State_STATE_IN_PROGRESS && tr.GetToState() == coordinatorv1.State_STATE_COMPLETE:
					sm.running = append(sm.running, at.Sub(dispatched))
				case tr.GetFromState() == coordinatorv1.State_STATE_IN_PROGRESS && tr.GetToState() == coordinatorv1.State_STATE_ERROR:
					sm.running = append(sm.running, at.Sub(dispatched))
					sm.failures++
					failed = at
				}
			}
		}
		if task.GetState() != coordinatorv1.State_STATE_COMPLETE {
			continue
		}
		// The critical path: back from the last step to finish, through
		// the parent that finished last each time.
		var cur string
		for _, s := range task.GetSteps() {
			if cur == "" || done[s.GetName()].After(done[cur]) {
				cur = s.GetName()
			}
		}
		for cur != "" {
			from, prev := created, ""
			for _, p := range step(task, cur).GetDependsOn() {
				if prev == "" || done[p].After(done[prev]) {
					prev = p
				}
			}
			if prev != "" && done[prev].After(from) {
				from = done[prev]
			}
			span := done[cur].Sub(from)
			require.GreaterOrEqual(t, span, time.Duration(0))
			m.steps[cur].path += span
			m.pathTotal += span
			cur = prev
		}
	}
	return m
}

// nearestRank is the p-th percentile of ds by nearest rank.
func nearestRank(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[int(math.Ceil(p/100*float64(len(s))))-1]
}

func requirePercentiles(t *testing.T, want []time.Duration, got *coordinatorv1.Percentiles, what string) {
	t.Helper()
	require.EqualValues(t, len(want), got.GetCount(), what)
	require.Equal(t, nearestRank(want, 50), got.GetP50().AsDuration(), "%s p50", what)
	require.Equal(t, nearestRank(want, 95), got.GetP95().AsDuration(), "%s p95", what)
	require.Equal(t, nearestRank(want, 99), got.GetP99().AsDuration(), "%s p99", what)
}

func requireAnalytics(t *testing.T, want *measured, got *coordinatorv1.TemplateAnalytics, since, until time.Time) {
	t.Helper()
	require.True(t, since.Equal(got.GetSince().AsTime()), "since")
	require.True(t, until.Equal(got.GetUntil().AsTime()), "until")
	require.EqualValues(t, want.finished, got.GetTasksFinished())
	require.EqualValues(t, want.completed, got.GetCompleted())
	require.EqualValues(t, want.errored, got.GetErrored())
	require.EqualValues(t, want.cancelled, got.GetCancelled())
	n := float64(want.finished)
	require.InDelta(t, n/until.Sub(since).Minutes(), got.GetThroughputPerMinute(), 1e-9)
	require.InDelta(t, float64(want.completed)/n, got.GetSuccessRate(), 1e-9)
	require.InDelta(t, float64(want.errored)/n, got.GetErrorRate(), 1e-9)
	require.InDelta(t, float64(want.cancelled)/n, got.GetCancelRate(), 1e-9)
	require.InDelta(t, float64(want.retries)/float64(want.attempts), got.GetRetryRate(), 1e-9)
	requirePercentiles(t, want.durations, got.GetDuration(), "duration")

	require.Len(t, got.GetSteps(), len(want.steps))
	var bottleneck string
	var best float64
	for _, gs := range got.GetSteps() {
		name := gs.GetName()
		ws := want.steps[name]
		require.NotNil(t, ws, name)
		requirePercentiles(t, ws.running, gs.GetRunning(), name+" running")
		requirePercentiles(t, ws.queue, gs.GetQueueWait(), name+" queue wait")
		require.EqualValues(t, ws.attempts, gs.GetAttempts(), name)
		require.EqualValues(t, ws.retries, gs.GetRetries(), name)
		require.EqualValues(t, ws.failures, gs.GetFailures(), name)
		share := float64(ws.path) / float64(want.pathTotal)
		require.InDelta(t, share, gs.GetCriticalPathShare(), 1e-9, name)
		if share > best {
			bottleneck, best = name, share
		}
	}
	require.Equal(t, bottleneck, got.GetBottleneckStep())
	require.InDelta(t, best, got.GetBottleneckShare(), 1e-9)
}

// GetAnalytics refuses what it cannot answer, naming the field, and says
// NotFound for a template (or version) that is not registered.
func TestAnalyticsRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(fmt.Sprintf(analyticsTemplate, "1.0.0", "first"))
	now := time.Now()
	for _, tc := range []struct {
		req  *coordinatorv1.GetAnalyticsRequest
		code codes.Code
		msg  string
	}{
		{&coordinatorv1.GetAnalyticsRequest{Name: "checkout"}, codes.InvalidArgument, "namespace is required"},
		{&coordinatorv1.GetAnalyticsRequest{Namespace: "shop"}, codes.InvalidArgument, "name is required"},
		{&coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout",
			Since: timestamppb.New(now), Until: timestamppb.New(now)}, codes.InvalidArgument, "since"},
		{&coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout",
			Since: timestamppb.New(now.Add(time.Hour))}, codes.InvalidArgument, "must be before until"},
		{&coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout",
			Until: &timestamppb.Timestamp{Nanos: -1}}, codes.InvalidArgument, "until:"},
		{&coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout",
			Since: timestamppb.New(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC))}, codes.InvalidArgument, "since: 0001-01-01"},
		{&coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "nope"}, codes.NotFound, "shop/nope"},
		{&coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout", Version: "9.9.9"}, codes.NotFound, "shop/checkout@9.9.9"},
	} {
		_, err := h.client.GetAnalytics(h.ctx, tc.req)
		require.Equal(t, tc.code, status.Code(err), "%v: %v", tc.req, err)
		require.Contains(t, status.Convert(err).Message(), tc.msg)
	}
}

// GetAnalytics is a read: a token granted the template's namespace (read
// access is enough) may call it; one granted another namespace may not.
func TestAnalyticsChecksTheNamespace(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	require.NoError(t, s.register(s.client("all-token-0123456789"), "a"))
	req := &coordinatorv1.GetAnalyticsRequest{Namespace: "a", Name: "flow"}
	resp, err := s.client("reader-a-token-0123456789").GetAnalytics(s.ctx, req)
	require.NoError(t, err)
	require.Zero(t, resp.GetAnalytics().GetTasksFinished())
	_, err = s.client("writer-b-token-0123456789").GetAnalytics(s.ctx, req)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	_, err = s.client("").GetAnalytics(s.ctx, req)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
}
