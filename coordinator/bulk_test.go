package coordinator_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// outcomeIDs lists the ids of a bulk action's outcomes, in order, and
// whether each was done.
func outcomeIDs(outcomes []*coordinatorv1.TaskOutcome) ([]string, []bool) {
	var ids []string
	var done []bool
	for _, o := range outcomes {
		ids = append(ids, o.GetId())
		done = append(done, o.GetDone())
	}
	return ids, done
}

// RetryTasks retries the errored tasks a filter keeps, newest first, at
// most limit per call and saying when more are left; a dry run lists them
// and changes nothing.
func TestRetryTasks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var failing atomic.Bool
	failing.Store(true)
	h.startExecutor(4, map[string]executor.HandlerFunc{
		"partner": func(context.Context, *executor.Request) (any, error) {
			if failing.Load() {
				return nil, executor.Permanent(errors.New("partner API down"))
			}
			return map[string]any{"ok": true}, nil
		},
	})
	for _, name := range []string{"flaky", "other"} {
		h.apply(`
namespace: bulk
name: ` + name + `
version: 1.0.0
steps:
  - name: call
    handler: partner
`)
	}
	var flaky []string // newest first
	for i := range 3 {
		task := h.create("bulk", "flaky", map[string]any{"i": i})
		h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
		flaky = append([]string{task.GetId()}, flaky...)
	}
	other := h.create("bulk", "other", map[string]any{})
	h.waitState(other.GetId(), coordinatorv1.State_STATE_ERROR)
	failing.Store(false)

	filter := &coordinatorv1.TaskFilter{Namespace: "bulk", Name: "flaky"}
	dry, err := h.client.RetryTasks(h.ctx, &coordinatorv1.RetryTasksRequest{Filter: filter, DryRun: true})
	require.NoError(t, err)
	ids, done := outcomeIDs(dry.GetOutcomes())
	require.Equal(t, flaky, ids)
	require.Equal(t, []bool{false, false, false}, done)
	require.False(t, dry.GetMore())
	require.Equal(t, coordinatorv1.State_STATE_ERROR, h.get(flaky[0]).GetState(), "a dry run changes nothing")

	first, err := h.client.RetryTasks(h.ctx, &coordinatorv1.RetryTasksRequest{Filter: filter, Limit: 2, Reason: "partner back"})
	require.NoError(t, err)
	ids, done = outcomeIDs(first.GetOutcomes())
	require.Equal(t, flaky[:2], ids)
	require.Equal(t, []bool{true, true}, done)
	require.True(t, first.GetMore())
	for _, id := range flaky[:2] {
		h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
	}
	rest, err := h.client.RetryTasks(h.ctx, &coordinatorv1.RetryTasksRequest{Filter: filter, Limit: 2})
	require.NoError(t, err)
	ids, _ = outcomeIDs(rest.GetOutcomes())
	require.Equal(t, flaky[2:], ids)
	require.False(t, rest.GetMore())
	h.waitState(flaky[2], coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, coordinatorv1.State_STATE_ERROR, h.get(other.GetId()).GetState(), "outside the filter")
}

// CancelTasks cancels the pending and in-progress tasks a filter keeps and
// leaves the rest; bad requests are refused naming the field, changing
// nothing.
func TestCancelTasks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(`
namespace: bulk
name: backlog
version: 1.0.0
steps:
  - name: wait
    handler: nobody_hosts_this
`)
	// No executor: the tasks stay pending.
	a := h.create("bulk", "backlog", map[string]any{"customer": "a"})
	b := h.create("bulk", "backlog", map[string]any{"customer": "b"})

	for _, bad := range []struct {
		req  *coordinatorv1.CancelTasksRequest
		says string
	}{
		{&coordinatorv1.CancelTasksRequest{}, "filter: give at least one of"},
		{&coordinatorv1.CancelTasksRequest{Filter: &coordinatorv1.TaskFilter{}}, "filter: give at least one of"},
		{&coordinatorv1.CancelTasksRequest{Filter: &coordinatorv1.TaskFilter{Name: "backlog"}, Limit: 10_001}, "limit: 10001 is out of range"},
		{&coordinatorv1.CancelTasksRequest{Filter: &coordinatorv1.TaskFilter{Name: "backlog", ContextEquals: []string{"customer"}}}, "filter.context_equals[0]"},
	} {
		_, err := h.client.CancelTasks(h.ctx, bad.req)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v: %v", bad.req, err)
		require.Contains(t, status.Convert(err).Message(), bad.says)
	}
	require.Equal(t, coordinatorv1.State_STATE_PENDING, h.get(a.GetId()).GetState(), "refused requests change nothing")

	resp, err := h.client.CancelTasks(h.ctx, &coordinatorv1.CancelTasksRequest{
		Filter: &coordinatorv1.TaskFilter{Name: "backlog", ContextEquals: []string{"customer=a"}}, Reason: "customer left",
	})
	require.NoError(t, err)
	ids, done := outcomeIDs(resp.GetOutcomes())
	require.Equal(t, []string{a.GetId()}, ids)
	require.Equal(t, []bool{true}, done)
	cancelled := h.get(a.GetId())
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, cancelled.GetState())
	require.Equal(t, "customer left", cancelled.GetTransitions()[len(cancelled.GetTransitions())-1].GetReason())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, h.get(b.GetId()).GetState())

	// A cancelled task is no longer pending: a second call finds only b.
	resp, err = h.client.CancelTasks(h.ctx, &coordinatorv1.CancelTasksRequest{Filter: &coordinatorv1.TaskFilter{Namespace: "bulk"}})
	require.NoError(t, err)
	ids, _ = outcomeIDs(resp.GetOutcomes())
	require.Equal(t, []string{b.GetId()}, ids)
}

// A bulk action is authorized as its one-task action and listed as
// ListTasks lists: a write token of one namespace acts there only (a
// filter without a namespace is of its own), is refused another
// namespace, and a read token is refused.
func TestBulkActionsAuthorized(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	all := s.client("all-token-0123456789")
	var mine string
	for _, ns := range []string{"a", "b"} {
		require.NoError(t, s.register(all, ns))
		task, err := s.create(all, ns) // no executor: pending
		require.NoError(t, err)
		if ns == "a" {
			mine = task.GetId()
		}
	}
	byName := &coordinatorv1.TaskFilter{Name: "flow"}
	_, err := s.client("reader-a-token-0123456789").CancelTasks(s.ctx, &coordinatorv1.CancelTasksRequest{Filter: byName})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	writerA := s.client("writer-a-token-0123456789")
	_, err = writerA.CancelTasks(s.ctx, &coordinatorv1.CancelTasksRequest{Filter: &coordinatorv1.TaskFilter{Namespace: "b"}})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)

	resp, err := writerA.CancelTasks(s.ctx, &coordinatorv1.CancelTasksRequest{Filter: byName})
	require.NoError(t, err)
	ids, done := outcomeIDs(resp.GetOutcomes())
	require.Equal(t, []string{mine}, ids, "namespace a's task only")
	require.Equal(t, []bool{true}, done)
	left, err := all.CountTasks(s.ctx, &coordinatorv1.CountTasksRequest{Namespace: "b"})
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_PENDING, left.GetCounts()[0].GetState(), "namespace b's task untouched")
}
