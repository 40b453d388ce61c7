package storetest

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

func (s *suite) listing(t *testing.T) {
	t.Run("TaskList", func(t *testing.T) {
		t.Parallel()

		t.Run("NewestFirstPagedByBeforeID", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			var ids []string
			for range 5 {
				task, _ := f.createTask(t, "a")
				ids = append(ids, task.ID)
			}
			// Newest first: ids[4], ids[3], ...
			page1 := f.list(t, &store.TaskListParams{Limit: 2})
			require.Equal(t, []string{ids[4], ids[3]}, page1)
			page2 := f.list(t, &store.TaskListParams{Limit: 2, BeforeID: page1[1]})
			require.Equal(t, []string{ids[2], ids[1]}, page2)
			page3 := f.list(t, &store.TaskListParams{Limit: 2, BeforeID: page2[1]})
			require.Equal(t, []string{ids[0]}, page3)
			require.Empty(t, f.list(t, &store.TaskListParams{Limit: 2, BeforeID: page3[0]}))
			// No limit means the driver's cap, which is more than five.
			require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, f.list(t, &store.TaskListParams{}))
		})

		t.Run("FiltersByCreationTimeIDRangeAndKey", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			var tasks []*store.Task
			for range 4 {
				task, _ := f.createTask(t, "a")
				tasks = append(tasks, task)
			}
			ids := func(ts ...*store.Task) []string {
				out := make([]string, len(ts))
				for i, task := range ts {
					out[len(ts)-1-i] = task.ID // newest first
				}
				return out
			}
			require.Equal(t, ids(tasks[1], tasks[2], tasks[3]), f.list(t, &store.TaskListParams{CreatedAfter: tasks[1].CreatedAt}))
			require.Equal(t, ids(tasks[0], tasks[1]), f.list(t, &store.TaskListParams{CreatedBefore: tasks[2].CreatedAt}))
			require.Equal(t, ids(tasks[1], tasks[2]), f.list(t, &store.TaskListParams{CreatedAfter: tasks[1].CreatedAt, CreatedBefore: tasks[3].CreatedAt}))
			require.Equal(t, ids(tasks[2], tasks[3]), f.list(t, &store.TaskListParams{FromID: tasks[2].ID}))
			require.Equal(t, ids(tasks[2]), f.list(t, &store.TaskListParams{FromID: tasks[2].ID, BeforeID: tasks[3].ID}))
			require.Equal(t, ids(tasks[1]), f.list(t, &store.TaskListParams{Key: tasks[1].ID}))
			require.Equal(t, ids(tasks[3]), f.list(t, &store.TaskListParams{Key: tasks[3].IdentityKey}))
			require.Empty(t, f.list(t, &store.TaskListParams{Key: "no-such-key"}))
			require.Empty(t, f.list(t, &store.TaskListParams{Key: tasks[1].ID, State: "complete"}), "filters combine")
			require.Equal(t, ids(tasks[0], tasks[2]), f.list(t, &store.TaskListParams{IDs: []string{tasks[2].ID, "no-such-id", tasks[0].ID}}))
			require.Equal(t, ids(tasks[3]), f.list(t, &store.TaskListParams{IDs: []string{tasks[3].ID}}))
			require.Equal(t, ids(tasks[2]), f.list(t, &store.TaskListParams{IDs: []string{tasks[0].ID, tasks[2].ID}, FromID: tasks[1].ID}))
			require.Empty(t, f.list(t, &store.TaskListParams{IDs: []string{}}), "an empty set of ids keeps none")
		})

		t.Run("FiltersByContext", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			contexts := []string{
				`{"order_id":"A-1","amount":5,"paid":true,"customer":{"id":"c-7","tier":null}}`,
				`{"order_id":"A-2","amount":5.0,"paid":false,"customer":{"id":"c-8"}}`,
				`{"order_id":"a\u003cb \"q\" é","amount":"5","paid":1,"customer":"c-7"}`,
				`{"order_id":["A-1"],"amount":50,"customer":{"id":{"nested":"c-7"}}}`,
				`{}`,
				`{"a.b":1,"a":{"b":2},"k=v":"x"}`,
			}
			var ids []string
			for _, c := range contexts {
				p := f.taskParams("ctx")
				p.Task.Context = json.RawMessage(c)
				ids = append(ids, f.create(t, p).ID)
			}
			match := func(want []int, ms ...store.ContextMatch) {
				t.Helper()
				wantIDs := []string{}
				for _, i := range slices.Backward(want) {
					wantIDs = append(wantIDs, ids[i])
				}
				got := f.list(t, &store.TaskListParams{Namespace: f.ns, Context: ms})
				require.Equal(t, wantIDs, got, "%+v", ms)
			}
			m := func(v any, path ...string) store.ContextMatch { return store.ContextMatch{Path: path, Value: v} }
			match([]int{0}, m("A-1", "order_id"))       // not the array holding "A-1"
			match([]int{2}, m(`a<b "q" é`, "order_id")) // compared unescaped
			match([]int{0, 1}, m(5.0, "amount"))        // 5 and 5.0 alike, not the string "5"
			match([]int{2}, m("5", "amount"))           // nor the number for the string
			match([]int{0}, m(true, "paid"))            // not the number 1
			match([]int{1}, m(false, "paid"))
			match([]int{0}, m(nil, "customer", "tier")) // JSON null, not a missing key
			match([]int{0}, m("c-7", "customer", "id")) // a path into objects
			match([]int{2}, m("c-7", "customer"))
			match([]int{0}, m("A-1", "order_id"), m(5.0, "amount")) // every match must hold
			match(nil, m("A-1", "order_id"), m(false, "paid"))
			match(nil, m("A-1", "no_such_key"))
			match(nil, m("A-1", "order_id", "deeper"))
			match([]int{5}, m(1.0, "a.b"))    // a key holding a dot
			match(nil, m(1.0, "a", "b"))      // is not the path a, b
			match([]int{5}, m(2.0, "a", "b")) // which is
			match([]int{5}, m("x", "k=v"))

			// With other filters and pages: newest first, the limit honoured.
			got := f.list(t, &store.TaskListParams{Namespace: f.ns, Context: []store.ContextMatch{m(5.0, "amount")}, Limit: 1})
			require.Equal(t, []string{ids[1]}, got)
			got = f.list(t, &store.TaskListParams{Namespace: f.ns, Context: []store.ContextMatch{m(5.0, "amount")}, Limit: 1, BeforeID: ids[1]})
			require.Equal(t, []string{ids[0]}, got)
			require.Empty(t, f.list(t, &store.TaskListParams{Namespace: f.ns, Name: "other", Context: []store.ContextMatch{m(5.0, "amount")}}))

			for _, bad := range []store.ContextMatch{{}, m("x", "order_id", ""), m([]any{"A-1"}, "order_id"), m(math.Inf(1), "amount")} {
				_, err := f.store.TaskList(f.ctx, &store.TaskListParams{Namespace: f.ns, Context: []store.ContextMatch{bad}})
				require.Error(t, err, "%+v", bad)
			}
		})

		t.Run("HonoursLimitAboveDefault", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			// One more than a page of the default size, plus one: asking for
			// default+1 (a page and "is there more?") must get exactly that.
			const n = store.DefaultListLimit + 2
			ids := make([]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < n; i += 8 {
						p := f.taskParams("linear")
						ids[i] = p.Task.ID
						_, _, errs[i] = f.store.TaskCreate(f.ctx, p)
					}
				})
			}
			wg.Wait()
			require.NoError(t, errors.Join(errs...))
			slices.Sort(ids)
			slices.Reverse(ids)

			require.Equal(t, ids[:n-1], f.list(t, &store.TaskListParams{Limit: n - 1}))
			require.Equal(t, ids, f.list(t, &store.TaskListParams{Limit: 10 * n}))
			require.Equal(t, ids[:store.DefaultListLimit], f.list(t, &store.TaskListParams{}), "no limit is the default page")
			require.Equal(t, ids[1:n-1], f.list(t, &store.TaskListParams{Limit: n - 2, BeforeID: ids[0]}))
		})

		t.Run("ReturnsWholeTasks", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			p := f.taskParams("linear", "a")
			p.Task.BypassSteps = []string{"a"}
			f.create(t, p)
			list, err := f.store.TaskList(f.ctx, &store.TaskListParams{})
			require.NoError(t, err)
			require.Len(t, list, 1)
			requireTask(t, p.Task, list[0])
		})

		t.Run("Filters", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			other := &fixture{ctx: f.ctx, store: f.store, ns: "other-" + f.ns}

			linearPending := f.create(t, f.taskParams("linear", "a"))
			diamondPending := f.create(t, f.taskParams("diamond", "a"))
			linearRunning := f.create(t, f.taskParams("linear", "a"))
			f.advance(t, &store.TaskAdvanceParams{TaskID: linearRunning.ID, Task: &store.TaskChange{From: state.Pending, To: state.InProgress}, At: f.now()})
			otherLinear := other.create(t, other.taskParams("linear", "a"))

			require.Equal(t, []string{otherLinear.ID, linearRunning.ID, diamondPending.ID, linearPending.ID},
				f.list(t, &store.TaskListParams{}))
			require.Equal(t, []string{linearRunning.ID, diamondPending.ID, linearPending.ID},
				f.list(t, &store.TaskListParams{Namespace: f.ns}))
			require.Equal(t, []string{linearRunning.ID, linearPending.ID},
				f.list(t, &store.TaskListParams{Namespace: f.ns, Name: "linear"}))
			require.Equal(t, []string{otherLinear.ID, linearRunning.ID, linearPending.ID},
				f.list(t, &store.TaskListParams{Name: "linear"}))
			require.Equal(t, []string{otherLinear.ID, diamondPending.ID, linearPending.ID},
				f.list(t, &store.TaskListParams{State: state.Pending}))
			require.Equal(t, []string{linearRunning.ID},
				f.list(t, &store.TaskListParams{State: state.InProgress}))
			require.Equal(t, []string{linearPending.ID},
				f.list(t, &store.TaskListParams{State: state.Pending, Namespace: f.ns, Name: "linear"}))
			require.Equal(t, []string{linearPending.ID},
				f.list(t, &store.TaskListParams{State: state.Pending, Namespace: f.ns, BeforeID: diamondPending.ID}))
			require.Empty(t, f.list(t, &store.TaskListParams{State: state.Complete}))
			require.Empty(t, f.list(t, &store.TaskListParams{Namespace: "nobody"}))
		})
	})

	t.Run("TaskListActive", func(t *testing.T) {
		t.Parallel()

		t.Run("OnlyUnfinishedOldestFirstPaged", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			// One task per state, in creation order; only pending and
			// in_progress are active.
			var active []string
			for _, to := range []state.State{
				state.Pending, state.Complete, state.InProgress, state.Error,
				state.Pending, state.Cancelled, state.InProgress, state.ResolvedManually,
			} {
				task, _ := f.createTask(t, "a")
				if to != state.Pending {
					f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Task: &store.TaskChange{From: state.Pending, To: to}, At: f.now()})
				}
				if to == state.Pending || to == state.InProgress {
					active = append(active, task.ID)
				}
			}
			require.Len(t, active, 4)

			all := f.active(t, &store.TaskListActiveParams{})
			require.Equal(t, active, all)

			page1 := f.active(t, &store.TaskListActiveParams{Limit: 3})
			require.Equal(t, active[:3], page1)
			page2 := f.active(t, &store.TaskListActiveParams{Limit: 3, AfterID: page1[2]})
			require.Equal(t, active[3:], page2)
			require.Empty(t, f.active(t, &store.TaskListActiveParams{Limit: 3, AfterID: page2[0]}))

			list, err := f.store.TaskListActive(f.ctx, &store.TaskListActiveParams{Limit: 1})
			require.NoError(t, err)
			require.Equal(t, state.Pending, list[0].State)
			require.Equal(t, f.ns, list[0].Namespace)
		})
	})

	t.Run("StepList", func(t *testing.T) {
		t.Parallel()

		t.Run("OrderedByTaskThenPosition", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			// Steps inserted out of position order; the list follows
			// position, not insertion.
			p1 := f.taskParams("tree", "root", "leaf_a", "leaf_b")
			p1.Steps[0].Position, p1.Steps[1].Position, p1.Steps[2].Position = 2, 0, 1
			f.create(t, p1)
			p2 := f.taskParams("tree", "only")
			f.create(t, p2)
			f.createTask(t, "unrelated")

			names := func(steps []*store.Step) []string {
				out := make([]string, len(steps))
				for i, st := range steps {
					out[i] = st.TaskID + ":" + st.Name
				}
				return out
			}
			k1, k2 := p1.Task.ID, p2.Task.ID
			want := []string{k1 + ":leaf_a", k1 + ":leaf_b", k1 + ":root", k2 + ":only"}
			if p2.Task.ID < p1.Task.ID {
				want = append(want[3:], want[:3]...)
			}
			require.Equal(t, want, names(f.steps(t, p1.Task.ID, p2.Task.ID)))
			require.Equal(t, want, names(f.steps(t, p2.Task.ID, p1.Task.ID, p2.Task.ID)), "order and repeats of the ids do not matter")
		})

		t.Run("UnknownOrNoTasks", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			f.createTask(t, "a")
			require.Empty(t, f.steps(t))
			require.Empty(t, f.steps(t, newID()))
		})
	})

	t.Run("TransitionList", func(t *testing.T) {
		t.Parallel()

		t.Run("RecordsLeaseToken", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			l := f.acquire(t, "a")
			p := f.taskParams("linear", "a", "b")
			p.Task.OwnerToken = l.Token
			p.Transitions = []*store.Transition{{TaskID: p.Task.ID, StepID: p.Steps[1].ID, StepName: "b", From: state.Pending, To: state.ResolvedManually, At: f.now(), Reason: "bypassed"}}
			f.create(t, p)
			require.Equal(t, l.Token, p.Transitions[0].LeaseToken, "TaskCreate sets the token on its params, as it sets Seq")

			fenced := f.advance(t, &store.TaskAdvanceParams{TaskID: p.Task.ID, Lease: l, At: f.now(),
				Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps: []*store.StepChange{startStep(p.Steps[0])},
			})
			unfenced := f.advance(t, &store.TaskAdvanceParams{TaskID: p.Task.ID, At: f.now(),
				Steps: []*store.StepChange{completeStep(p.Steps[0], 1, `{}`)},
			})
			var tokens []int64
			for _, tr := range append(fenced, unfenced...) {
				tokens = append(tokens, tr.LeaseToken)
			}
			require.Equal(t, []int64{l.Token, l.Token, 0}, tokens, "TaskAdvance returns each transition's token")

			stored := f.transitions(t, p.Task.ID)
			requireTransitions(t, append(append([]*store.Transition{p.Transitions[0]}, fenced...), unfenced...), stored)

			unowned, _ := f.createTask(t, "a")
			for _, tr := range f.transitions(t, unowned.ID) {
				require.Zero(t, tr.LeaseToken)
			}
		})

		t.Run("AfterSeq", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a", "b")
			other, otherSteps := f.createTask(t, "a")
			first := f.advance(t, &store.TaskAdvanceParams{
				TaskID: task.ID, Task: &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps: []*store.StepChange{startStep(steps[0])}, At: f.now(),
			})
			f.advance(t, &store.TaskAdvanceParams{TaskID: other.ID, Steps: []*store.StepChange{startStep(otherSteps[0])}, At: f.now()})
			second := f.advance(t, &store.TaskAdvanceParams{
				TaskID: task.ID, Steps: []*store.StepChange{completeStep(steps[0], 1, `{}`), startStep(steps[1])}, At: f.now(),
			})
			all := append(append([]*store.Transition{}, first...), second...)

			got := f.transitions(t, task.ID)
			requireTransitions(t, all, got)
			requireSeqIncreasing(t, got, 0)

			after, err := f.store.TransitionList(f.ctx, &store.TransitionListParams{TaskID: task.ID, AfterSeq: first[1].Seq})
			require.NoError(t, err)
			requireTransitions(t, second, after)
			require.Equal(t, second[0].Seq, after[0].Seq)

			last := got[len(got)-1].Seq
			none, err := f.store.TransitionList(f.ctx, &store.TransitionListParams{TaskID: task.ID, AfterSeq: last})
			require.NoError(t, err)
			require.Empty(t, none)
			require.Len(t, f.transitions(t, other.ID), 1)
		})
	})
}

func (f *fixture) list(t *testing.T, p *store.TaskListParams) []string {
	t.Helper()
	tasks, err := f.store.TaskList(f.ctx, p)
	require.NoError(t, err)
	return taskIDs(tasks)
}

func (f *fixture) active(t *testing.T, p *store.TaskListActiveParams) []string {
	t.Helper()
	tasks, err := f.store.TaskListActive(f.ctx, p)
	require.NoError(t, err)
	for _, task := range tasks {
		require.Contains(t, []state.State{state.Pending, state.InProgress}, task.State, task.ID)
	}
	return taskIDs(tasks)
}

func taskIDs(tasks []*store.Task) []string {
	ids := make([]string, len(tasks))
	for i, task := range tasks {
		ids[i] = task.ID
	}
	return ids
}
