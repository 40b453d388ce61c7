package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// Analytics reads a failure's message and retry time back from the reason
// the engine writes on the failed attempt's transition: if failureReason
// changes its wording, this fails rather than analytics quietly measuring
// queue waits from the failure instead of the retry's due time.
func TestParseFailureReasonReadsFailureReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		attempt, max int
		retryable    bool
		delay        time.Duration
		msg          string
	}{
		{1, 3, true, 20 * time.Millisecond, "card declined"},
		{2, 3, true, 1234567 * time.Microsecond, "gateway: timeout: upstream"},
		{1, 3, true, 90 * time.Second, ""},
		{1, 3, true, 0, "at once"},
		{3, 3, true, 0, "no attempt left: really"},
		{1, 3, false, 0, "card stolen"},
	} {
		reason := failureReason(tc.attempt, tc.max, tc.retryable, tc.delay, tc.msg)
		msg, retryIn, retrying := parseFailureReason(reason)
		require.Equal(t, tc.msg, msg, reason)
		wantRetry := tc.retryable && tc.attempt < tc.max
		require.Equal(t, wantRetry, retrying, reason)
		if wantRetry {
			require.Equal(t, tc.delay.Round(time.Millisecond), retryIn, reason)
		}
	}
	msg, _, retrying := parseFailureReason("cancelled: by request")
	require.Equal(t, "cancelled: by request", msg, "a reason in another form is all message")
	require.False(t, retrying)
}

func TestLatestPart(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	since := t0.Add(-time.Hour)
	// finished builds tasks latest first, finished at t0 plus the given
	// minutes.
	finished := func(minutes ...int) []*store.Task {
		out := make([]*store.Task, len(minutes))
		for i, m := range minutes {
			out[i] = &store.Task{ID: fmt.Sprint(i), UpdatedAt: t0.Add(time.Duration(m) * time.Minute)}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		tasks     []*store.Task
		limit     int
		wantKept  int
		wantSince time.Time
	}{
		{"fewer than the limit", finished(4, 3, 2), 5, 3, since},
		{"exactly the limit", finished(4, 3, 2), 3, 3, since},
		{"one over", finished(4, 3, 2, 1), 3, 3, t0.Add(time.Minute + time.Nanosecond)},
		{"tie at the cut leaves both out", finished(4, 3, 3, 2), 2, 1, t0.Add(3*time.Minute + time.Nanosecond)},
		{"all tied", finished(4, 4, 4), 2, 0, t0.Add(4*time.Minute + time.Nanosecond)},
	} {
		kept, gotSince := latestPart(tc.tasks, since, tc.limit)
		require.Len(t, kept, tc.wantKept, tc.name)
		require.Equal(t, tc.wantSince, gotSince, tc.name)
		for _, task := range kept {
			require.False(t, task.UpdatedAt.Before(gotSince), "%s: a kept task is in the window", tc.name)
		}
	}
}

// A window holding more finished tasks than one call may measure is
// measured over its latest part: the newest tasks, with since moved to
// just after the first task left out, so the answer's window holds exactly
// the tasks it counts. The bound is on tasks × steps as well as on tasks.
func TestAnalyticsMeasuresTheLatestPartOfABusyWindow(t *testing.T) {
	t.Parallel()
	c := newTestEngine(t)
	e := c.engine
	ctx := context.Background()
	tmpl, err := template.Parse([]byte(`
namespace: test
name: busy
version: 1.0.0
steps:
  - name: a
    handler: nobody_hosts_this
  - name: b
    handler: nobody_hosts_this
    depends_on: [a]
`))
	require.NoError(t, err)
	_, _, err = e.templates.register(ctx, tmpl, e.now())
	require.NoError(t, err)

	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, m := range []int{1, 2, 3, 3, 4} {
		id := uuid.Must(uuid.NewV7()).String()
		finish := t0.Add(time.Duration(m) * time.Minute)
		_, created, err := e.store.TaskCreate(ctx, &store.TaskCreateParams{
			Task: &store.Task{ID: id, Namespace: "test", Name: "busy", Version: "1.0.0", State: state.Complete,
				Context: json.RawMessage(`{}`), IdentityKey: id, CreatedAt: t0, UpdatedAt: finish, CompletedAt: finish},
			Steps: []*store.Step{
				{ID: uuid.NewString(), Name: "a", Position: 0, Handler: "h", State: state.Complete, MaxAttempts: 3, UpdatedAt: finish},
				{ID: uuid.NewString(), Name: "b", Position: 1, Handler: "h", DependsOn: []string{"a"}, State: state.Complete, MaxAttempts: 3, UpdatedAt: finish},
			},
		})
		require.NoError(t, err)
		require.True(t, created)
	}

	measure := func(maxTasks, maxSteps int) (int, time.Time) {
		t.Helper()
		r, err := e.analytics(ctx, &analyticsParams{namespace: "test", name: "busy", since: t0, until: t0.Add(time.Hour),
			maxTasks: maxTasks, maxSteps: maxSteps})
		require.NoError(t, err)
		require.Equal(t, t0.Add(time.Hour), r.Until)
		return r.Finished, r.Since
	}
	n, since := measure(100, 1000)
	require.Equal(t, 5, n)
	require.Equal(t, t0, since, "a window within the bounds is measured whole")

	n, since = measure(3, 1000)
	require.Equal(t, 3, n)
	require.Equal(t, t0.Add(2*time.Minute+time.Nanosecond), since)

	n, since = measure(2, 1000)
	require.Equal(t, 1, n, "the two tasks that finished together at the cut are both left out")
	require.Equal(t, t0.Add(3*time.Minute+time.Nanosecond), since)

	n, _ = measure(100, 6)
	require.Equal(t, 3, n, "six steps' worth of a two-step template is three tasks")
}
