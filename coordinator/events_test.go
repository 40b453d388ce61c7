package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

const eventsTemplate = `
namespace: %s
name: %s
version: 1.0.0
steps:
  - name: first
    handler: noop
  - name: second
    handler: noop
    depends_on: [first]
`

// subscriber keeps what a SubscribeEvents client has received and its
// cursor, across the streams it opens.
type subscriber struct {
	t      *testing.T
	events []*coordinatorv1.Event
	cursor string
	// finished counts the tasks whose task transition to a terminal state
	// was received.
	finished map[string]bool
	// enough, when set, ends take as soon as it holds.
	enough func() bool
}

func newSubscriber(t *testing.T) *subscriber {
	return &subscriber{t: t, finished: map[string]bool{}}
}

// open starts a stream after the subscriber's cursor and waits for its
// header, which says the starting point is fixed.
func (s *subscriber) open(ctx context.Context, c coordinatorv1.CoordinatorServiceClient, req *coordinatorv1.SubscribeEventsRequest) (coordinatorv1.CoordinatorService_SubscribeEventsClient, error) {
	s.t.Helper()
	if req == nil {
		req = &coordinatorv1.SubscribeEventsRequest{Follow: true}
	}
	req.After = s.cursor
	stream, err := c.SubscribeEvents(ctx, req)
	if err != nil {
		return nil, err
	}
	if _, err := stream.Header(); err != nil {
		return nil, err
	}
	return stream, nil
}

// take receives from stream until it has n more events, the stream ends
// (nil) or fails (its error).
func (s *subscriber) take(stream coordinatorv1.CoordinatorService_SubscribeEventsClient, n int) error {
	for i := 0; i < n; i++ {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ev := msg.GetEvent()
		s.events = append(s.events, ev)
		s.cursor = ev.GetCursor()
		tr := ev.GetTransition()
		if tr.GetStepName() == "" && terminal(tr.GetToState()) {
			s.finished[tr.GetTaskId()] = true
		}
		if s.enough != nil && s.enough() {
			return nil
		}
	}
	return nil
}

func terminal(st coordinatorv1.State) bool {
	switch st {
	case coordinatorv1.State_STATE_COMPLETE, coordinatorv1.State_STATE_ERROR, coordinatorv1.State_STATE_CANCELLED:
		return true
	}
	return false
}

// session follows the log on c for at most n events, then hangs up, as a
// client that disconnects would. A stream broken by a restart ends the
// session early; the next one resumes.
func (s *subscriber) session(ctx context.Context, c coordinatorv1.CoordinatorServiceClient, n int) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.open(ctx, c, nil)
	if status.Code(err) == codes.Unavailable {
		return
	}
	require.NoError(s.t, err)
	err = s.take(stream, n)
	if status.Code(err) != codes.Unavailable {
		require.NoError(s.t, err)
	}
}

// requireMatchesStore checks the subscriber got every stored transition of
// the tasks exactly once: cursors never repeat, the log order is seq order
// (SQLite), and each task's events are its TransitionList, in order.
func (s *subscriber) requireMatchesStore(st store.Store, taskIDs []string) {
	t := s.t
	t.Helper()
	byTask := map[string][]*coordinatorv1.Transition{}
	seen := map[string]bool{}
	var last int64
	for i, ev := range s.events {
		require.False(t, seen[ev.GetCursor()], "cursor %s received twice", ev.GetCursor())
		seen[ev.GetCursor()] = true
		tr := ev.GetTransition()
		require.Greater(t, tr.GetSeq(), last, "event %d out of seq order", i)
		last = tr.GetSeq()
		require.Equal(t, fmt.Sprint(tr.GetSeq()), ev.GetCursor(), "a SQLite cursor is the seq")
		byTask[tr.GetTaskId()] = append(byTask[tr.GetTaskId()], tr)
	}
	total := 0
	for _, id := range taskIDs {
		want, err := st.TransitionList(context.Background(), &store.TransitionListParams{TaskID: id})
		require.NoError(t, err)
		total += len(want)
		got := byTask[id]
		require.Len(t, got, len(want), "task %s", id)
		for i := range want {
			require.Equal(t, want[i].Seq, got[i].GetSeq(), "task %s transition %d", id, i)
			require.Equal(t, string(want[i].To), statepbName(got[i].GetToState()), "task %s transition %d", id, i)
			require.Equal(t, want[i].StepName, got[i].GetStepName(), "task %s transition %d", id, i)
		}
	}
	require.Len(t, s.events, total, "nothing but the tasks' transitions")
}

func statepbName(st coordinatorv1.State) string {
	switch st {
	case coordinatorv1.State_STATE_PENDING:
		return "pending"
	case coordinatorv1.State_STATE_IN_PROGRESS:
		return "in_progress"
	case coordinatorv1.State_STATE_COMPLETE:
		return "complete"
	case coordinatorv1.State_STATE_ERROR:
		return "error"
	case coordinatorv1.State_STATE_CANCELLED:
		return "cancelled"
	case coordinatorv1.State_STATE_RESOLVED_MANUALLY:
		return "resolved_manually"
	}
	return ""
}

// TestSubscribeEventsResumesExactlyOnceAcrossDisconnectsAndARestart runs
// 1,000 tasks while a subscriber hangs up every few hundred events and
// resumes from its last cursor, once across a coordinator crash and
// restart in the middle: it receives every transition exactly once, in
// seq order, each task's as the store lists them.
func TestSubscribeEventsResumesExactlyOnceAcrossDisconnectsAndARestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{ExecutorGrace: 200 * time.Millisecond}, 0)
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 64}, listen(t), nil)
	h.apply(fmt.Sprintf(eventsTemplate, "events", "pair"))
	const half = 500
	var ids []string
	createHalf := func() {
		for i := range half {
			ids = append(ids, h.create("events", "pair", map[string]any{"n": len(ids), "i": i}).GetId())
		}
	}
	sub := newSubscriber(t)
	createHalf()
	sub.enough = func() bool { return len(sub.events) >= 1500 }
	for !sub.enough() {
		sub.session(h.ctx, h.client, 333)
	}

	n.crash()
	n.start()
	h.waitExecutor("exec-1", true)
	createHalf()
	sub.enough = func() bool { return len(sub.finished) == len(ids) }
	for !sub.enough() {
		sub.session(h.ctx, h.client, 777)
	}
	// Whatever followed the last task's end (nothing, for these tasks).
	sub.enough = nil
	stream, err := sub.open(h.ctx, h.client, &coordinatorv1.SubscribeEventsRequest{})
	require.NoError(t, err)
	require.NoError(t, sub.take(stream, 1<<30))
	sub.requireMatchesStore(n.store, ids)
}

// eventsHarness is a coordinator with an executor, two templates in two
// namespaces, and a finished task of each.
func eventsHarness(t *testing.T) (*harness, []*coordinatorv1.Task) {
	h := newHarness(t)
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 8}, listen(t), nil)
	h.apply(fmt.Sprintf(eventsTemplate, "alpha", "pair"))
	h.apply(fmt.Sprintf(eventsTemplate, "beta", "other"))
	a := h.create("alpha", "pair", map[string]any{})
	b := h.create("beta", "other", map[string]any{})
	return h, []*coordinatorv1.Task{
		h.waitState(a.GetId(), coordinatorv1.State_STATE_COMPLETE),
		h.waitState(b.GetId(), coordinatorv1.State_STATE_COMPLETE),
	}
}

// history reads the log from after without following: the stream ends once
// it has caught up.
func history(t *testing.T, h *harness, req *coordinatorv1.SubscribeEventsRequest) ([]*coordinatorv1.Event, error) {
	t.Helper()
	stream, err := h.client.SubscribeEvents(h.ctx, req)
	require.NoError(t, err)
	var out []*coordinatorv1.Event
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, msg.GetEvent())
	}
}

// TestSubscribeEventsFiltersAndModes: without follow the stream ends once
// caught up; namespace, name and kinds filter; bad requests are refused
// with the field named.
func TestSubscribeEventsFiltersAndModes(t *testing.T) {
	t.Parallel()
	h, tasks := eventsHarness(t)
	a, b := tasks[0], tasks[1]
	perTask := 1 + 2 + 2 + 1 // task starts, each step starts and completes, task completes

	all, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{})
	require.NoError(t, err)
	require.Len(t, all, 2*perTask)
	for _, ev := range all {
		switch ev.GetTransition().GetTaskId() {
		case a.GetId():
			require.Equal(t, "alpha", ev.GetNamespace())
			require.Equal(t, "pair", ev.GetName())
		case b.GetId():
			require.Equal(t, "beta", ev.GetNamespace())
			require.Equal(t, "other", ev.GetName())
		default:
			t.Fatalf("event of an unknown task: %v", ev)
		}
	}

	byNS, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{Namespace: "beta"})
	require.NoError(t, err)
	require.Len(t, byNS, perTask)
	byName, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{Name: "pair"})
	require.NoError(t, err)
	require.Len(t, byName, perTask)
	require.Equal(t, a.GetId(), byName[0].GetTransition().GetTaskId())
	tasksOnly, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{Kinds: []coordinatorv1.EventKind{coordinatorv1.EventKind_EVENT_KIND_TASK}})
	require.NoError(t, err)
	require.Len(t, tasksOnly, 4)
	for _, ev := range tasksOnly {
		require.Empty(t, ev.GetTransition().GetStepName())
	}
	stepsOnly, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{Kinds: []coordinatorv1.EventKind{
		coordinatorv1.EventKind_EVENT_KIND_STEP, coordinatorv1.EventKind_EVENT_KIND_UNSPECIFIED}})
	require.NoError(t, err)
	require.Len(t, stepsOnly, 8)
	both, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{Kinds: []coordinatorv1.EventKind{
		coordinatorv1.EventKind_EVENT_KIND_STEP, coordinatorv1.EventKind_EVENT_KIND_TASK}})
	require.NoError(t, err)
	require.Len(t, both, len(all))

	// Resuming after an event gives exactly what followed it.
	rest, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{After: all[4].GetCursor()})
	require.NoError(t, err)
	require.Equal(t, len(all)-5, len(rest))
	require.Equal(t, all[5].GetCursor(), rest[0].GetCursor())
	// from_now without follow: nothing has happened since, so nothing.
	none, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{FromNow: true})
	require.NoError(t, err)
	require.Empty(t, none)

	for _, tc := range []struct {
		req  *coordinatorv1.SubscribeEventsRequest
		code codes.Code
		msg  string
	}{
		{&coordinatorv1.SubscribeEventsRequest{Kinds: []coordinatorv1.EventKind{7}}, codes.InvalidArgument, "kinds: unknown value 7"},
		{&coordinatorv1.SubscribeEventsRequest{After: "1", FromNow: true}, codes.InvalidArgument, "after and from_now cannot be combined"},
		{&coordinatorv1.SubscribeEventsRequest{After: "soon"}, codes.InvalidArgument, `after: cursor "soon"`},
		// Ahead of every event written: refused at once, followed or not,
		// rather than waited on until the log reaches it.
		{&coordinatorv1.SubscribeEventsRequest{After: "1000000"}, codes.InvalidArgument, "ahead of the newest event"},
		{&coordinatorv1.SubscribeEventsRequest{After: "1000000", Follow: true}, codes.InvalidArgument, "ahead of the newest event"},
	} {
		_, err := history(t, h, tc.req)
		require.Equal(t, tc.code, status.Code(err), "%v: %v", tc.req, err)
		require.ErrorContains(t, err, tc.msg)
	}
}

// TestSubscribeEventsFollowsNewCommits: a following subscriber first gets
// the history, then, woken by the commits, each new task's events as they
// happen; from_now skips the history.
func TestSubscribeEventsFollowsNewCommits(t *testing.T) {
	t.Parallel()
	h, _ := eventsHarness(t)
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()

	old := newSubscriber(t)
	oldStream, err := old.open(ctx, h.client, &coordinatorv1.SubscribeEventsRequest{Follow: true})
	require.NoError(t, err)
	require.NoError(t, old.take(oldStream, 12))
	fresh := newSubscriber(t)
	freshStream, err := fresh.open(ctx, h.client, &coordinatorv1.SubscribeEventsRequest{Follow: true, FromNow: true})
	require.NoError(t, err)

	task := h.create("alpha", "pair", map[string]any{"new": true})
	require.NoError(t, fresh.take(freshStream, 6))
	require.NoError(t, old.take(oldStream, 6))
	for _, s := range []*subscriber{old, fresh} {
		got := s.events[len(s.events)-6:]
		for _, ev := range got {
			require.Equal(t, task.GetId(), ev.GetTransition().GetTaskId())
		}
		require.Equal(t, coordinatorv1.State_STATE_COMPLETE, got[5].GetTransition().GetToState())
	}
	require.Len(t, fresh.events, 6, "from_now sent no history")
	require.Equal(t, cursorsOf(old.events[12:]), cursorsOf(fresh.events))
}

func cursorsOf(evs []*coordinatorv1.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.GetCursor()
	}
	return out
}

// TestSubscribeEventsRefusesACursorPastRetention: once the history a
// cursor points into is pruned, resuming there is refused with OutOfRange
// naming the oldest cursor available, which resumes fine; the retention
// loop of a coordinator started with EventRetention prunes by itself.
func TestSubscribeEventsRefusesACursorPastRetention(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	h := serveCoordinator(t, coordinator.Config{Store: st}, nil)
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 8}, listen(t), nil)
	h.apply(fmt.Sprintf(eventsTemplate, "alpha", "pair"))
	first := h.create("alpha", "pair", map[string]any{"n": 1})
	h.waitState(first.GetId(), coordinatorv1.State_STATE_COMPLETE)
	all, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{})
	require.NoError(t, err)
	old := all[1].GetCursor()
	require.NoError(t, h.coord.Stop(h.ctx))

	// The same store under a coordinator that keeps history for a
	// nanosecond: its retention loop prunes at start.
	h = serveCoordinator(t, coordinator.Config{Store: st, EventRetention: time.Nanosecond}, nil)
	var oldest string
	require.Eventually(t, func() bool {
		_, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{After: old})
		if status.Code(err) != codes.OutOfRange {
			return false
		}
		require.ErrorContains(t, err, "older than the events retained")
		msg := status.Convert(err).Message()
		_, after, _ := strings.Cut(msg, "resume from ")
		oldest, _, _ = strings.Cut(after, " ")
		return true
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, all[len(all)-1].GetCursor(), oldest, "the floor is the newest event pruned past")
	trs, err := st.TransitionList(h.ctx, &store.TransitionListParams{TaskID: first.GetId()})
	require.NoError(t, err)
	require.Len(t, trs, 1, "the task keeps its last transition")
	rest, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{After: oldest})
	require.NoError(t, err)
	require.Empty(t, rest)
}

// TestSubscribeEventsNamespaces: the stream is authorized like ListTasks:
// a token limited to one namespace gets that namespace's events without
// asking; one granted several must name one; another namespace is refused.
func TestSubscribeEventsNamespaces(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	all, readerA, readerAB := s.client("all-token-0123456789"), s.client("reader-a-token-0123456789"), s.client("reader-ab-token-0123456789")
	require.NoError(t, s.register(all, "a"))
	require.NoError(t, s.register(all, "b"))
	// No executor: the tasks wait, and cancelling them leaves three
	// events each (the task and its two steps).
	for _, ns := range []string{"a", "b"} {
		task, err := s.create(all, ns)
		require.NoError(t, err)
		_, err = all.CancelTask(s.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
	}
	read := func(c coordinatorv1.CoordinatorServiceClient, ns string) ([]string, error) {
		stream, err := c.SubscribeEvents(s.ctx, &coordinatorv1.SubscribeEventsRequest{Namespace: ns})
		require.NoError(t, err)
		var got []string
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			got = append(got, msg.GetEvent().GetNamespace())
		}
	}
	three := func(ns string) []string { return []string{ns, ns, ns} }
	got, err := read(readerA, "")
	require.NoError(t, err)
	require.Equal(t, three("a"), got)
	got, err = read(all, "")
	require.NoError(t, err)
	require.ElementsMatch(t, append(three("a"), three("b")...), got)
	_, err = read(readerAB, "")
	requireCode(t, err, codes.PermissionDenied, "give a namespace filter")
	got, err = read(readerAB, "b")
	require.NoError(t, err)
	require.Equal(t, three("b"), got)
	_, err = read(readerA, "b")
	requireCode(t, err, codes.PermissionDenied, `namespace "b"`)
}

// eventCountingStore counts the event log reads that reach the store.
type eventCountingStore struct {
	store.Store
	lists atomic.Int64
}

func (s *eventCountingStore) EventList(ctx context.Context, p *store.EventListParams) (*store.EventPage, error) {
	s.lists.Add(1)
	return s.Store.EventList(ctx, p)
}

// Subscribers share the coordinator's reads of the event log: each page is
// read from the store once, whoever asks for it next is served from
// memory, and each subscriber still gets exactly what its filters keep.
func TestSubscribersShareReadsOfTheEventLog(t *testing.T) {
	t.Parallel()
	st := &eventCountingStore{Store: openSQLite(t)}
	h := storeHarness(t, st, coordinator.Config{})
	h.apply(fmt.Sprintf(eventsTemplate, "alpha", "waits"))
	h.apply(fmt.Sprintf(eventsTemplate, "beta", "waits"))
	// No executor: each task waits until cancelled, which records three
	// transitions (two steps, then the task): 2 × 120 × 3 = 720 events,
	// two pages of the log.
	for i := range 120 {
		for _, ns := range []string{"alpha", "beta"} {
			task := h.create(ns, "waits", map[string]any{"n": i})
			_, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId()})
			require.NoError(t, err)
		}
	}
	before := st.lists.Load()
	all, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{})
	require.NoError(t, err)
	require.Len(t, all, 720)
	pages := st.lists.Load() - before
	require.EqualValues(t, 2, pages, "the whole log in two pages")

	for range 4 {
		again, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{})
		require.NoError(t, err)
		require.Len(t, again, 720)
	}
	alpha, err := history(t, h, &coordinatorv1.SubscribeEventsRequest{Namespace: "alpha", Kinds: []coordinatorv1.EventKind{coordinatorv1.EventKind_EVENT_KIND_TASK}})
	require.NoError(t, err)
	require.Len(t, alpha, 120)
	for _, ev := range alpha {
		require.Equal(t, "alpha", ev.GetNamespace())
		require.Empty(t, ev.GetTransition().GetStepName())
	}
	require.Equal(t, pages, st.lists.Load()-before, "later subscribers were served from memory")
}
