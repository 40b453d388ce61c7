package coordinator_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// counts is a CountTasksResponse as a map, for comparing.
func counts(resp *coordinatorv1.CountTasksResponse) map[coordinatorv1.State]int64 {
	out := map[coordinatorv1.State]int64{}
	for _, c := range resp.GetCounts() {
		out[c.GetState()] = c.GetCount()
	}
	return out
}

func TestCountTasksByStateAndFilter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(`
namespace: demo
name: one
version: 1.0.0
steps: [{name: a, handler: noop}]
`)
	h.apply(`
namespace: demo
name: two
version: 1.0.0
steps: [{name: a, handler: noop}]
`)
	h.apply(`
namespace: other
name: one
version: 1.0.0
steps: [{name: a, handler: noop}]
`)
	// No executor: every task stays pending until one is cancelled.
	first := h.create("demo", "one", map[string]any{"i": 0})
	for i := 1; i < 3; i++ {
		h.create("demo", "one", map[string]any{"i": i})
	}
	cancelled := h.create("demo", "two", map[string]any{"i": 0})
	_, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: cancelled.GetId()})
	require.NoError(t, err)
	last := h.create("other", "one", map[string]any{"i": 0})

	count := func(req *coordinatorv1.CountTasksRequest) map[coordinatorv1.State]int64 {
		t.Helper()
		resp, err := h.client.CountTasks(h.ctx, req)
		require.NoError(t, err)
		return counts(resp)
	}
	pending, cancel := coordinatorv1.State_STATE_PENDING, coordinatorv1.State_STATE_CANCELLED
	require.Equal(t, map[coordinatorv1.State]int64{pending: 4, cancel: 1}, count(&coordinatorv1.CountTasksRequest{}))
	require.Equal(t, map[coordinatorv1.State]int64{pending: 3, cancel: 1}, count(&coordinatorv1.CountTasksRequest{Namespace: "demo"}))
	require.Equal(t, map[coordinatorv1.State]int64{pending: 3}, count(&coordinatorv1.CountTasksRequest{Namespace: "demo", Name: "one"}))
	require.Equal(t, map[coordinatorv1.State]int64{pending: 4}, count(&coordinatorv1.CountTasksRequest{Name: "one"}))
	require.Empty(t, count(&coordinatorv1.CountTasksRequest{Namespace: "nobody"}))

	resp, err := h.client.CountTasks(h.ctx, &coordinatorv1.CountTasksRequest{Namespace: "demo"})
	require.NoError(t, err)
	require.Equal(t, []coordinatorv1.State{pending, cancel}, []coordinatorv1.State{resp.GetCounts()[0].GetState(), resp.GetCounts()[1].GetState()},
		"counts come in the order of the states")

	// ListTasks' other filters narrow the counts as they narrow its list.
	require.Equal(t, map[coordinatorv1.State]int64{pending: 2, cancel: 1}, count(&coordinatorv1.CountTasksRequest{ContextEquals: []string{"i=0"}}))
	require.Equal(t, map[coordinatorv1.State]int64{pending: 1}, count(&coordinatorv1.CountTasksRequest{Namespace: "demo", ContextEquals: []string{"i=1"}}))
	require.Equal(t, map[coordinatorv1.State]int64{cancel: 1}, count(&coordinatorv1.CountTasksRequest{Search: cancelled.GetId()}))
	require.Empty(t, count(&coordinatorv1.CountTasksRequest{Search: cancelled.GetId(), Name: "one"}))
	require.Equal(t, map[coordinatorv1.State]int64{pending: 3, cancel: 1},
		count(&coordinatorv1.CountTasksRequest{CreatedAfter: first.GetCreatedAt(), CreatedBefore: last.GetCreatedAt()}),
		"from the first task, before the last")
	require.Empty(t, count(&coordinatorv1.CountTasksRequest{CreatedAfter: timestamppb.New(last.GetCreatedAt().AsTime().Add(time.Second))}))
	for _, bad := range []struct {
		req  *coordinatorv1.CountTasksRequest
		says string
	}{
		{&coordinatorv1.CountTasksRequest{ContextEquals: []string{"no-equals-sign"}}, "context_equals[0]"},
		{&coordinatorv1.CountTasksRequest{CreatedAfter: last.GetCreatedAt(), CreatedBefore: first.GetCreatedAt()}, "created_after"},
		{&coordinatorv1.CountTasksRequest{CreatedBefore: &timestamppb.Timestamp{Nanos: -1}}, "created_before"},
	} {
		_, err := h.client.CountTasks(h.ctx, bad.req)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v: %v", bad.req, err)
		require.Contains(t, status.Convert(err).Message(), bad.says)
	}
}

// CountTasks is authorized as ListTasks: a namespace the token was not
// granted is refused, a token of one namespace counts that one, and one
// of several namespaces must name which.
func TestCountTasksAuthorizedAsListTasks(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	all := s.client("all-token-0123456789")
	for _, ns := range []string{"a", "b"} {
		require.NoError(t, s.register(all, ns))
		_, err := s.create(all, ns)
		require.NoError(t, err)
	}
	_, err := s.create(all, "a")
	require.NoError(t, err)
	pending := coordinatorv1.State_STATE_PENDING

	resp, err := all.CountTasks(s.ctx, &coordinatorv1.CountTasksRequest{})
	require.NoError(t, err)
	require.Equal(t, map[coordinatorv1.State]int64{pending: 3}, counts(resp))

	readerA := s.client("reader-a-token-0123456789")
	resp, err = readerA.CountTasks(s.ctx, &coordinatorv1.CountTasksRequest{})
	require.NoError(t, err)
	require.Equal(t, map[coordinatorv1.State]int64{pending: 2}, counts(resp), "a token of one namespace counts that namespace")
	_, err = readerA.CountTasks(s.ctx, &coordinatorv1.CountTasksRequest{Namespace: "b"})
	requireCode(t, err, codes.PermissionDenied, `"b"`)

	readerAB := s.client("reader-ab-token-0123456789")
	_, err = readerAB.CountTasks(s.ctx, &coordinatorv1.CountTasksRequest{})
	requireCode(t, err, codes.PermissionDenied, "give a namespace filter")
	resp, err = readerAB.CountTasks(s.ctx, &coordinatorv1.CountTasksRequest{Namespace: "b"})
	require.NoError(t, err)
	require.Equal(t, map[coordinatorv1.State]int64{pending: 1}, counts(resp))

	_, err = s.client("").CountTasks(s.ctx, &coordinatorv1.CountTasksRequest{})
	requireCode(t, err, codes.Unauthenticated, "no bearer token")
	_, err = s.client("exec-token-0123456789").CountTasks(s.ctx, &coordinatorv1.CountTasksRequest{Namespace: "a"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "an executor token is not a read token")
}
