package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// runTasks creates n one-step tasks in namespace ns and runs each to
// completion, so the log gets four entries per task (the step's two
// transitions and the task's two).
func runTasks(t *testing.T, s *Store, ns string, n int) {
	t.Helper()
	ctx := t.Context()
	at := time.Unix(1_700_000_000, 0)
	for range n {
		p := storetest.TaskParams(ns, at, "a")
		_, _, err := s.TaskCreate(ctx, p)
		require.NoError(t, err)
		step := p.Steps[0].ID
		_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
			Steps: []*store.StepChange{{StepID: step, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}},
			Task:  &store.TaskChange{From: state.Pending, To: state.InProgress}})
		require.NoError(t, err)
		_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
			Steps: []*store.StepChange{{StepID: step, StepName: "a", From: state.InProgress, To: state.Complete, ExpectAttempts: 1, Attempts: 1}},
			Task:  &store.TaskChange{From: state.InProgress, To: state.Complete}})
		require.NoError(t, err)
	}
}

// requireTailMatchesFile checks that every cursor the tail answers gets the
// page the file gives, under each filter and limit, and that the tail
// answered the cursors from just before its oldest entry to just before
// its newest.
func requireTailMatchesFile(t *testing.T, s *Store, tailFrom, last int64) {
	t.Helper()
	ctx := t.Context()
	filters := []store.EventListParams{
		{}, {Namespace: "ns-a"}, {Namespace: "ns-b"}, {Kind: store.EventKindTask},
		{Kind: store.EventKindStep, Namespace: "ns-a"}, {Name: "nope"},
	}
	for _, f := range filters {
		for _, limit := range []int{1, 3, 500} {
			for after := int64(0); after <= last; after++ {
				p := f
				p.Limit = limit
				p.After = strconv.FormatInt(after, 10)
				if after == 0 {
					p.After = ""
				}
				mem, ok := s.tail.list(after, &p, limit, time.Now())
				require.Equal(t, after >= tailFrom-1 && after < last, ok, "cursor %d (tail from %d to %d)", after, tailFrom, last)
				if !ok {
					continue
				}
				file, err := s.eventListFile(ctx, &p, after, limit)
				require.NoError(t, err)
				require.Equal(t, file.Next, mem.Next, "cursor %d %+v", after, p)
				require.Equal(t, file.More, mem.More, "cursor %d %+v", after, p)
				require.Len(t, mem.Events, len(file.Events), "cursor %d %+v", after, p)
				for i := range file.Events {
					require.Equal(t, *file.Events[i].Transition, *mem.Events[i].Transition)
					require.Equal(t, file.Events[i].Cursor, mem.Events[i].Cursor)
					require.Equal(t, file.Events[i].Namespace, mem.Events[i].Namespace)
					require.Equal(t, file.Events[i].Name, mem.Events[i].Name)
				}
			}
		}
	}
}

// TestEventTailAnswersAsTheFile: the pages EventList serves from memory are
// the pages the file holds, entry for entry, including past the point
// where the ring wrapped, and including a task whose key the committer
// forgot (it finished) and read back (a late transition).
func TestEventTailAnswersAsTheFile(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	s.tail = newEventTail(13)
	s.tail.fileEvery = 0
	runTasks(t, s, "ns-a", 3)
	runTasks(t, s, "ns-b", 2)
	requireTailMatchesFile(t, s, 20-13+1, 20)

	// A transition after the task finished: its key is read from the file.
	ctx := t.Context()
	at := time.Unix(1_700_000_000, 0)
	p := storetest.TaskParams("ns-b", at, "a")
	_, _, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
		Steps: []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}},
		Task:  &store.TaskChange{From: state.Pending, To: state.InProgress}})
	require.NoError(t, err)
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at, Task: &store.TaskChange{From: state.InProgress, To: state.Cancelled}})
	require.NoError(t, err)
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
		Steps: []*store.StepChange{{StepID: p.Steps[0].ID, StepName: "a", From: state.InProgress, To: state.Cancelled, ExpectAttempts: 1, Attempts: 1}}})
	require.NoError(t, err)
	requireTailMatchesFile(t, s, 24-13+1, 24)
}

// TestEventTailLeavesOtherWritersToTheFile: entries another connection
// commits to the same file are not in this store's tail; a follower that
// reached the tail's end still finds them (the file answers there), and
// once this store writes again, after the other's entries, its tail starts
// over rather than skip them.
func TestEventTailLeavesOtherWritersToTheFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shared.db")
	a := openStore(t, Config{Path: path})
	b := openStore(t, Config{Path: path})
	a.tail.fileEvery = 0

	runTasks(t, a, "ns-a", 1)
	head := readAll(t, a, "")
	require.Len(t, head.Events, 4)

	runTasks(t, b, "ns-b", 1)
	page := readAll(t, a, head.Next)
	require.Len(t, page.Events, 4, "the other store's entries, read from the file at the tail's end")
	require.Equal(t, "ns-b", page.Events[0].Namespace)

	runTasks(t, a, "ns-a", 1)
	_, ok := a.tail.list(4, &store.EventListParams{}, 500, time.Now())
	require.False(t, ok, "the tail started over after the other store's entries")
	rest := readAll(t, a, page.Next)
	require.Len(t, rest.Events, 4)
	for _, ev := range rest.Events {
		require.Equal(t, "ns-a", ev.Namespace)
	}
	requireTailMatchesFile(t, a, 9, 12)
}

// TestEventTailAsksTheFileAtMostEvery: at the tail's end the file is read
// at most once per fileEvery; in between, the end is answered from memory,
// so another writer's entries wait for the next read of the file.
func TestEventTailAsksTheFileAtMostEvery(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "shared.db")
	a := openStore(t, Config{Path: path})
	b := openStore(t, Config{Path: path})
	a.tail.fileEvery = time.Hour

	runTasks(t, a, "ns-a", 1)
	head := readAll(t, a, "")
	require.Len(t, head.Events, 4)
	require.Empty(t, readAll(t, a, head.Next).Events, "nothing after the end, as the file says")
	runTasks(t, b, "ns-b", 1)
	require.Empty(t, readAll(t, a, head.Next).Events, "within fileEvery the end is answered from memory")

	a.tail.checked.Store(time.Now().Add(-2 * time.Hour).UnixNano())
	page := readAll(t, a, head.Next)
	require.Len(t, page.Events, 4, "once fileEvery has passed, the file is read and the other store's entries found")
	require.Equal(t, "ns-b", page.Events[0].Namespace)
}

// readAll reads the log after cursor to its end.
func readAll(t *testing.T, s *Store, after string) *store.EventPage {
	t.Helper()
	out := &store.EventPage{Next: after}
	for {
		p, err := s.EventList(context.Background(), &store.EventListParams{After: out.Next, Limit: 3})
		require.NoError(t, err)
		out.Events = append(out.Events, p.Events...)
		out.Next = p.Next
		if !p.More {
			return out
		}
	}
}

// TestEventTailRefusesPrunedCursors: once EventPrune moves the floor past
// entries the tail held, a cursor below the floor is refused as expired,
// as the file refuses it, rather than answered from memory.
func TestEventTailRefusesPrunedCursors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	runTasks(t, s, "ns-a", 3)
	runTasks(t, s, "ns-b", 1)
	_, ok := s.tail.list(1, &store.EventListParams{}, 500, time.Now())
	require.True(t, ok)

	res, err := s.EventPrune(ctx, &store.EventPruneParams{Before: time.Unix(1_700_000_000, 0).Add(time.Hour)})
	require.NoError(t, err)
	require.NotEmpty(t, res.Oldest)
	floor, err := strconv.ParseInt(res.Oldest, 10, 64)
	require.NoError(t, err)
	require.Positive(t, floor)
	for after := int64(1); after < floor; after++ {
		_, err = s.EventList(ctx, &store.EventListParams{After: fmt.Sprint(after)})
		require.ErrorIs(t, err, store.ErrCursorExpired, "cursor %d below the floor %d", after, floor)
	}
}

// TestTransitionsStoredByteForByte: a batch's transitions, inserted
// together, read back exactly as given, whatever their bytes: quotes,
// backslashes, control characters, NUL, invalid UTF-8, and metadata that is
// JSON with its own spacing.
func TestTransitionsStoredByteForByte(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Unix(1_700_000_000, 123456789).UTC()
	p := storetest.TaskParams("ns", at, "a")
	odd := []string{"plain", `q"uote\back\\slash`, "tab\tnew\nline\rcr\x01\x1f", "nul\x00byte", "bad\xff\xfeutf8", "ünïcödé ✓ 😀", ""}
	for i, text := range odd {
		var meta json.RawMessage
		if i%2 == 0 {
			meta = json.RawMessage(fmt.Sprintf(`{ "k" : %q,  "n":[1, 2] }`, "m"+strconv.Itoa(i)))
		}
		p.Transitions = append(p.Transitions, &store.Transition{
			TaskID: p.Task.ID, StepID: p.Steps[0].ID, StepName: text, From: state.Pending, To: state.Pending,
			At: at.Add(time.Duration(i)), Reason: text, Attempt: i, Metadata: meta,
		})
	}
	p.Transitions = append(p.Transitions, &store.Transition{TaskID: p.Task.ID, From: "", To: state.Pending, At: at, Reason: "created"})
	_, _, err := s.TaskCreate(ctx, p)
	require.NoError(t, err)

	page, err := s.eventListFile(ctx, &store.EventListParams{}, 0, 100)
	require.NoError(t, err)
	require.Len(t, page.Events, len(p.Transitions))
	for i, ev := range page.Events {
		want := *p.Transitions[i]
		want.Seq = int64(i + 1)
		require.Equal(t, want, *ev.Transition, "transition %d", i)
		if want.Metadata != nil {
			require.Equal(t, string(p.Transitions[i].Metadata), string(ev.Transition.Metadata), "metadata byte for byte")
		}
	}
}

// BenchmarkEventListHead reads the newest 100 entries of the log, as a
// follower a commit behind does: from the tail in memory, and from the
// file (the tail emptied before each read).
func BenchmarkEventListHead(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, Config{})
	at := time.Unix(1_700_000_000, 0)
	for range 200 {
		p := storetest.TaskParams("ns", at, "a", "b")
		_, _, err := s.TaskCreate(ctx, p)
		require.NoError(b, err)
		for _, st := range p.Steps {
			_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: at,
				Steps: []*store.StepChange{{StepID: st.ID, StepName: st.Name, From: state.Pending, To: state.InProgress, Attempts: 1}}})
			require.NoError(b, err)
		}
	}
	tail, err := s.EventTail(ctx)
	require.NoError(b, err)
	last, err := strconv.ParseInt(tail, 10, 64)
	require.NoError(b, err)
	params := &store.EventListParams{After: strconv.FormatInt(last-100, 10), Limit: 500}
	for _, mem := range []bool{true, false} {
		name := "memory"
		if !mem {
			name = "file"
			s.tail = newEventTail(tailCapacity) // empty: nothing is written from here on
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				page, err := s.EventList(ctx, params)
				if err != nil || len(page.Events) != 100 {
					b.Fatalf("%d events, %v", len(page.Events), err)
				}
			}
		})
	}
}

// BenchmarkTaskListByContext lists with a context match no task holds, so
// each call reads the context of every one of 20,000 tasks: the cost of
// the filter per task scanned is ns/op / 20,000.
func BenchmarkTaskListByContext(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, Config{})
	const n = 20_000
	at := time.Unix(1_700_000_000, 0)
	for range n {
		_, _, err := s.TaskCreate(ctx, storetest.TaskParams("ns", at, "a"))
		require.NoError(b, err)
	}
	for _, c := range []struct {
		name  string
		match store.ContextMatch
	}{
		{"string", store.ContextMatch{Path: []string{"order_id"}, Value: "none"}},
		{"number", store.ContextMatch{Path: []string{"order_id"}, Value: -1.0}},
		{"nested", store.ContextMatch{Path: []string{"customer", "id"}, Value: "none"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			params := &store.TaskListParams{Namespace: "ns", Context: []store.ContextMatch{c.match}, Limit: 50}
			for b.Loop() {
				tasks, err := s.TaskList(ctx, params)
				if err != nil || len(tasks) != 0 {
					b.Fatalf("%d tasks, %v", len(tasks), err)
				}
			}
		})
		// The dashboard counts by state under the same filter: the same
		// scan, to the end whatever it finds.
		b.Run(c.name+"/count", func(b *testing.B) {
			params := &store.TaskCountParams{Namespace: "ns", Context: []store.ContextMatch{c.match}}
			for b.Loop() {
				counts, err := s.TaskCount(ctx, params)
				if err != nil || len(counts) != 0 {
					b.Fatalf("%v, %v", counts, err)
				}
			}
		})
	}
}
