package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

func (s *suite) events(t *testing.T) {
	t.Run("EventList", func(t *testing.T) {
		t.Parallel()

		t.Run("EveryTransitionOnceInTaskOrder", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			var ids []string
			// Interleaved: each round moves every task one step on.
			var tasks [][]*store.Step
			for range 3 {
				task, steps := f.createTask(t, "a", "b")
				ids = append(ids, task.ID)
				tasks = append(tasks, steps)
			}
			for round := range 4 {
				for i, id := range ids {
					f.runRound(t, id, tasks[i], round)
				}
			}
			want := f.allTransitions(t, ids...)
			// Small pages, so the cursors of Next are used too.
			got := f.readEvents(t, &store.EventListParams{Limit: 2}, len(want))
			requireEventsAre(t, want, got)
			for _, ev := range got {
				require.Equal(t, f.ns, ev.Namespace)
				require.Equal(t, "linear", ev.Name)
			}
			// Resuming from any event's cursor returns exactly what
			// followed it.
			for i, ev := range got {
				rest := f.readEvents(t, &store.EventListParams{After: ev.Cursor, Limit: 3}, len(got)-i-1)
				require.Equal(t, cursors(got[i+1:]), cursors(rest), "after event %d", i)
			}
			// Caught up: nothing, Next unchanged, no More.
			last := got[len(got)-1].Cursor
			page, err := f.store.EventList(f.ctx, &store.EventListParams{After: last})
			require.NoError(t, err)
			require.Empty(t, page.Events)
			require.Equal(t, last, page.Next)
			require.False(t, page.More)
		})

		t.Run("Filters", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			other := "other-" + f.ns
			p1 := f.taskParams("linear", "a")
			p2 := f.taskParams("diamond", "a")
			p3 := f.taskParams("linear", "a")
			p3.Task.Namespace = other
			for _, p := range []*store.TaskCreateParams{p1, p2, p3} {
				f.create(t, p)
				f.runRound(t, p.Task.ID, p.Steps, 0)
			}
			all := f.readEvents(t, &store.EventListParams{}, 6)
			require.Len(t, all, 6)
			byNS := f.readEvents(t, &store.EventListParams{Namespace: other, Limit: 1}, 2)
			requireEventsAre(t, f.allTransitions(t, p3.Task.ID), byNS)
			require.Equal(t, other, byNS[0].Namespace)
			byName := f.readEvents(t, &store.EventListParams{Namespace: f.ns, Name: "diamond"}, 2)
			requireEventsAre(t, f.allTransitions(t, p2.Task.ID), byName)
			tasksOnly := f.readEvents(t, &store.EventListParams{Kind: store.EventKindTask, Limit: 2}, 3)
			require.Len(t, tasksOnly, 3)
			for _, ev := range tasksOnly {
				require.Empty(t, ev.Transition.StepID)
			}
			stepsOnly := f.readEvents(t, &store.EventListParams{Kind: store.EventKindStep}, 3)
			require.Len(t, stepsOnly, 3)
			for _, ev := range stepsOnly {
				require.NotEmpty(t, ev.Transition.StepID)
			}

			// A page that matched nothing still moves Next past what it
			// examined, so a filtered reader does not read it again.
			page, err := f.store.EventList(f.ctx, &store.EventListParams{Namespace: "nobody", Limit: 4})
			require.NoError(t, err)
			require.Empty(t, page.Events)
			require.True(t, page.More)
			require.Equal(t, all[3].Cursor, page.Next)
		})

		t.Run("RefusesCursorsItDidNotIssue", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			for _, c := range []string{"x", "-1", "1.2.3", " 1"} {
				_, err := f.store.EventList(f.ctx, &store.EventListParams{After: c})
				require.ErrorIs(t, err, store.ErrCursorInvalid, "cursor %q", c)
			}
		})

		t.Run("ConcurrentWritersFromTwoStores", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			second := f.open(t)
			const writers, perWriter = 6, 15
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				ids  []string
				errs = make([]error, writers)
			)
			for w := range writers {
				st := f.store
				if w%2 == 1 {
					st = second
				}
				wg.Go(func() {
					for range perWriter {
						p := f.taskParams("linear", "a")
						if _, _, err := st.TaskCreate(f.ctx, p); err != nil {
							errs[w] = err
							return
						}
						if _, err := st.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: f.now(),
							Task:  &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "started"},
							Steps: []*store.StepChange{startStep(p.Steps[0])}}); err != nil {
							errs[w] = err
							return
						}
						mu.Lock()
						ids = append(ids, p.Task.ID)
						mu.Unlock()
					}
				})
			}
			// Follow the log while they write, from a third point of view.
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			var got []*store.Event
			cursor := ""
			read := func() {
				page, err := f.store.EventList(f.ctx, &store.EventListParams{After: cursor, Limit: 7})
				require.NoError(t, err)
				got = append(got, page.Events...)
				cursor = page.Next
			}
			for running := true; running; {
				select {
				case <-done:
					running = false
				default:
					read()
				}
			}
			require.NoError(t, errors.Join(errs...))
			// Caught up once every writer's events are delivered: on a
			// shared server an unrelated open transaction may hold the
			// log's horizon back for a while, delaying events, never
			// losing them.
			want := f.allTransitions(t, ids...)
			require.Eventually(t, func() bool { read(); return len(got) >= len(want) }, eventWait, time.Millisecond)
			read()
			requireEventsAre(t, want, got)
		})
	})

	t.Run("EventTail", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		old := f.taskParams("linear", "a")
		f.create(t, old)
		f.runRound(t, old.Task.ID, old.Steps, 0)
		tail, err := f.store.EventTail(f.ctx)
		require.NoError(t, err)
		p := f.taskParams("linear", "a")
		f.create(t, p)
		f.runRound(t, p.Task.ID, p.Steps, 0)
		f.runRound(t, old.Task.ID, old.Steps, 1)
		history := f.allTransitions(t, old.Task.ID)[:2]
		want := append(f.allTransitions(t, p.Task.ID), f.allTransitions(t, old.Task.ID)[2:]...)
		got := f.readEvents(t, &store.EventListParams{After: tail}, len(want))
		// Everything after the tail, and of what came before it at most
		// what was committed just before (a shared database's horizon may
		// trail the call a little), ahead of the rest.
		var extra int
		for extra < len(got) && extra < len(history) && got[extra].Transition.Seq == history[extra].Seq {
			extra++
		}
		requireEventsAre(t, want, got[extra:])
	})

	t.Run("EventPrune", func(t *testing.T) {
		t.Parallel()

		for _, limit := range []int{0, 2} {
			t.Run(fmt.Sprintf("Limit%d", limit), func(t *testing.T) {
				t.Parallel()
				f := s.setup(t)
				// done finished before the cutoff; running started before
				// it and is still going; late ran entirely after it.
				done := f.taskParams("linear", "a", "b")
				f.create(t, done)
				for round := range 4 {
					f.runRound(t, done.Task.ID, done.Steps, round)
				}
				running := f.taskParams("linear", "a")
				f.create(t, running)
				f.runRound(t, running.Task.ID, running.Steps, 0)
				before := f.allTransitions(t, done.Task.ID, running.Task.ID)
				oldCursor := f.readEvents(t, &store.EventListParams{Limit: 1}, len(before))[0].Cursor
				cutoff := f.now()
				late := f.taskParams("linear", "a")
				f.create(t, late)
				for round := range 2 {
					f.runRound(t, late.Task.ID, late.Steps, round)
				}

				// Batches until the floor has passed every entry older than
				// the cutoff (on PostgreSQL, once they are all below the
				// horizon).
				var total store.EventPruneResult
				deadline := time.Now().Add(eventWait)
				for total.Examined < len(before) {
					res, err := f.store.EventPrune(f.ctx, &store.EventPruneParams{Before: cutoff, Limit: limit})
					require.NoError(t, err)
					total.Examined += res.Examined
					total.Deleted += res.Deleted
					total.Oldest = res.Oldest
					if limit > 0 && res.More {
						require.Equal(t, limit, res.Examined)
					}
					require.True(t, time.Now().Before(deadline), "pruned %d entries of %d", total.Examined, len(before))
				}
				doneTrs := f.transitions(t, done.Task.ID)
				require.Len(t, doneTrs, 1, "only the task's last transition is kept")
				require.Equal(t, state.Complete, doneTrs[0].To)
				require.Len(t, f.transitions(t, running.Task.ID), 2, "a running task keeps its history")
				require.Len(t, f.transitions(t, late.Task.ID), 4, "history newer than the cutoff is kept")
				require.Equal(t, len(before), total.Examined)
				require.Equal(t, len(before)-3, total.Deleted)
				require.NotEmpty(t, total.Oldest)

				// A cursor below the floor is refused, naming the floor.
				_, err := f.store.EventList(f.ctx, &store.EventListParams{After: oldCursor})
				var expired *store.CursorExpiredError
				require.ErrorAs(t, err, &expired)
				require.ErrorIs(t, err, store.ErrCursorExpired)
				require.Equal(t, total.Oldest, expired.Oldest)
				require.Contains(t, err.Error(), total.Oldest)
				// From the floor on, everything newer is there.
				got := f.readEvents(t, &store.EventListParams{After: total.Oldest}, 4)
				requireEventsAre(t, f.allTransitions(t, late.Task.ID), got)
				// Without a cursor: all that is retained, in order.
				all := f.readEvents(t, &store.EventListParams{}, 1+2+4)
				require.Len(t, all, 1+2+4)

				// Nothing more to prune: the floor stays.
				res, err := f.store.EventPrune(f.ctx, &store.EventPruneParams{Before: cutoff})
				require.NoError(t, err)
				require.Zero(t, res.Examined)
				require.Equal(t, total.Oldest, res.Oldest)
			})
		}

		t.Run("RequiresACutoff", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			_, err := f.store.EventPrune(f.ctx, &store.EventPruneParams{})
			require.ErrorContains(t, err, "Before")
		})
	})
}

// eventWait bounds the wait for the log to deliver what was committed.
const eventWait = 10 * time.Second

// runRound moves a task of chained steps (made by taskParams) one round on:
// round 0 starts the task and its first step, round 2k+1 completes step k,
// round 2k+2 starts step k+1; completing the last step completes the task.
func (f *fixture) runRound(t *testing.T, taskID string, steps []*store.Step, round int) {
	t.Helper()
	p := &store.TaskAdvanceParams{TaskID: taskID, At: f.now()}
	k := (round - 1) / 2
	switch {
	case round == 0:
		p.Task = &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "started"}
		p.Steps = []*store.StepChange{startStep(steps[0])}
	case round%2 == 1 && k < len(steps):
		p.Steps = []*store.StepChange{{StepID: steps[k].ID, StepName: steps[k].Name, From: state.InProgress,
			To: state.Complete, ExpectAttempts: 1, Attempts: 1, Reason: "done"}}
		if k == len(steps)-1 {
			p.Task = &store.TaskChange{From: state.InProgress, To: state.Complete, Reason: "all steps complete"}
		}
	case round%2 == 0 && k+1 < len(steps):
		p.Steps = []*store.StepChange{startStep(steps[k+1])}
	default:
		return
	}
	f.advance(t, p)
}

// allTransitions lists the transitions of the tasks, each task's in its own
// order, tasks one after the other.
func (f *fixture) allTransitions(t *testing.T, ids ...string) []*store.Transition {
	t.Helper()
	var out []*store.Transition
	for _, id := range ids {
		out = append(out, f.transitions(t, id)...)
	}
	return out
}

// readEvents reads the log to its end from params.After, until it holds at
// least want events: on a shared PostgreSQL server another test's open
// transaction may hold the log's horizon back for a moment, so the events
// of a commit that returned may be delivered a little later.
func (f *fixture) readEvents(t *testing.T, params *store.EventListParams, want int) []*store.Event {
	t.Helper()
	p := *params
	var out []*store.Event
	deadline := time.Now().Add(eventWait)
	for {
		page, err := f.store.EventList(f.ctx, &p)
		require.NoError(t, err)
		out = append(out, page.Events...)
		if page.More {
			require.NotEqual(t, p.After, page.Next, "a full page moves the cursor")
		}
		p.After = page.Next
		if !page.More && len(out) >= want {
			return out
		}
		if !page.More {
			require.True(t, time.Now().Before(deadline), "the log delivered %d events of %d", len(out), want)
			time.Sleep(time.Millisecond)
		}
	}
}

// requireEventsAre checks that events hold exactly the transitions of want,
// each once, each task's in the order TransitionList gives them, with
// distinct cursors.
func requireEventsAre(t *testing.T, want []*store.Transition, events []*store.Event) {
	t.Helper()
	require.Len(t, events, len(want))
	bySeq := map[int64]*store.Transition{}
	for _, tr := range want {
		bySeq[tr.Seq] = tr
	}
	seen := map[string]bool{}
	lastOfTask := map[string]int64{}
	for i, ev := range events {
		require.False(t, seen[ev.Cursor], "cursor %s twice", ev.Cursor)
		seen[ev.Cursor] = true
		w, ok := bySeq[ev.Transition.Seq]
		require.True(t, ok, "event %d (seq %d) is not one of the transitions expected", i, ev.Transition.Seq)
		delete(bySeq, ev.Transition.Seq)
		require.Equal(t, normTransition(t, w), normTransition(t, ev.Transition), "event %d", i)
		require.Greater(t, ev.Transition.Seq, lastOfTask[w.TaskID], "task %s out of order at event %d", w.TaskID, i)
		lastOfTask[w.TaskID] = ev.Transition.Seq
	}
}

func cursors(events []*store.Event) []string {
	out := make([]string, 0, len(events))
	for _, ev := range events {
		out = append(out, ev.Cursor)
	}
	return out
}
