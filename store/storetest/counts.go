package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

func (s *suite) counts(t *testing.T) {
	t.Run("TaskCount", func(t *testing.T) {
		t.Parallel()

		t.Run("ByStateAndFilters", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			other := &fixture{ctx: f.ctx, store: f.store, ns: "other-" + f.ns}
			require.Empty(t, f.count(t, &store.TaskCountParams{}), "no tasks, no states")

			in := func(fx *fixture, name string, st state.State, n int) {
				for range n {
					p := fx.taskParams(name)
					p.Task.State = st
					f.create(t, p)
				}
			}
			in(f, "linear", state.Complete, 3)
			in(f, "linear", state.Pending, 2)
			in(f, "linear", state.Error, 1)
			in(f, "diamond", state.Complete, 1)
			in(f, "diamond", state.Cancelled, 2)
			in(other, "linear", state.Complete, 4)
			in(other, "linear", state.ResolvedManually, 1)

			c := func(st state.State, n int64) store.StateCount { return store.StateCount{State: st, Count: n} }
			// In the order of state.All, states without tasks left out.
			require.Equal(t, []store.StateCount{c(state.Pending, 2), c(state.Complete, 8), c(state.Error, 1), c(state.Cancelled, 2), c(state.ResolvedManually, 1)},
				f.count(t, &store.TaskCountParams{}))
			require.Equal(t, []store.StateCount{c(state.Pending, 2), c(state.Complete, 4), c(state.Error, 1), c(state.Cancelled, 2)},
				f.count(t, &store.TaskCountParams{Namespace: f.ns}))
			require.Equal(t, []store.StateCount{c(state.Pending, 2), c(state.Complete, 3), c(state.Error, 1)},
				f.count(t, &store.TaskCountParams{Namespace: f.ns, Name: "linear"}))
			require.Equal(t, []store.StateCount{c(state.Complete, 1), c(state.Cancelled, 2)},
				f.count(t, &store.TaskCountParams{Namespace: f.ns, Name: "diamond"}))
			require.Equal(t, []store.StateCount{c(state.Pending, 2), c(state.Complete, 7), c(state.Error, 1), c(state.ResolvedManually, 1)},
				f.count(t, &store.TaskCountParams{Name: "linear"}), "a name alone counts it in every namespace")
			require.Empty(t, f.count(t, &store.TaskCountParams{Namespace: "nobody"}))
			require.Empty(t, f.count(t, &store.TaskCountParams{Namespace: f.ns, Name: "nothing"}))
			nilParams, err := f.store.TaskCount(f.ctx, nil)
			require.NoError(t, err)
			require.Equal(t, f.count(t, &store.TaskCountParams{}), nilParams, "nil params count everything")
		})

		t.Run("AgreesWithTaskListsFilters", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			states := []state.State{state.Complete, state.Pending, state.Error, state.Complete, state.Cancelled, state.Complete}
			var tasks []*store.Task
			for i, st := range states {
				// One clock for all, so creation times follow the ids.
				p := f.taskParams([]string{"linear", "diamond"}[i%2])
				if i == 4 {
					p.Task.Namespace = "other-" + f.ns
				}
				p.Task.State = st
				p.Task.Context = json.RawMessage(fmt.Sprintf(`{"order":{"id":"A-%d"},"tier":%q}`, i, []string{"gold", "silver"}[i%3/2]))
				tasks = append(tasks, f.create(t, p))
			}
			byState := func(p *store.TaskCountParams) []store.StateCount {
				l := p.List()
				l.Limit = 100
				ids := f.list(t, l)
				n := map[string]int64{}
				for _, task := range tasks {
					if slices.Contains(ids, task.ID) {
						n[string(task.State)]++
					}
				}
				out, err := store.StateCounts(n)
				require.NoError(t, err)
				return out
			}
			m := func(v any, path ...string) store.ContextMatch { return store.ContextMatch{Path: path, Value: v} }
			c := func(st state.State, n int64) store.StateCount { return store.StateCount{State: st, Count: n} }
			for _, tc := range []struct {
				p    store.TaskCountParams
				want []store.StateCount
			}{
				{store.TaskCountParams{CreatedAfter: tasks[2].CreatedAt}, []store.StateCount{c(state.Complete, 2), c(state.Error, 1), c(state.Cancelled, 1)}},
				{store.TaskCountParams{CreatedBefore: tasks[2].CreatedAt}, []store.StateCount{c(state.Pending, 1), c(state.Complete, 1)}},
				{store.TaskCountParams{Namespace: f.ns, CreatedAfter: tasks[1].CreatedAt, CreatedBefore: tasks[5].CreatedAt}, []store.StateCount{c(state.Pending, 1), c(state.Complete, 1), c(state.Error, 1)}},
				{store.TaskCountParams{FromID: tasks[3].ID, BeforeID: tasks[5].ID}, []store.StateCount{c(state.Complete, 1), c(state.Cancelled, 1)}},
				{store.TaskCountParams{Key: tasks[2].ID}, []store.StateCount{c(state.Error, 1)}},
				{store.TaskCountParams{Key: tasks[5].IdentityKey}, []store.StateCount{c(state.Complete, 1)}},
				{store.TaskCountParams{Key: tasks[5].IdentityKey, Name: "linear"}, nil},
				{store.TaskCountParams{Context: []store.ContextMatch{m("silver", "tier")}}, []store.StateCount{c(state.Complete, 1), c(state.Error, 1)}},
				{store.TaskCountParams{Namespace: "other-" + f.ns, Context: []store.ContextMatch{m("gold", "tier")}}, []store.StateCount{c(state.Cancelled, 1)}},
				{store.TaskCountParams{Name: "linear", Context: []store.ContextMatch{m("gold", "tier")}}, []store.StateCount{c(state.Complete, 1), c(state.Cancelled, 1)}},
				{store.TaskCountParams{Context: []store.ContextMatch{m("A-1", "order", "id"), m("gold", "tier")}}, []store.StateCount{c(state.Pending, 1)}},
				{store.TaskCountParams{Context: []store.ContextMatch{m("A-1", "order", "id"), m("silver", "tier")}}, nil},
			} {
				got := f.count(t, &tc.p)
				if tc.want == nil {
					require.Empty(t, got, "%+v", tc.p)
				} else {
					require.Equal(t, tc.want, got, "%+v", tc.p)
				}
				if len(got) == 0 {
					got = nil
				}
				want := byState(&tc.p)
				if len(want) == 0 {
					want = nil
				}
				require.Equal(t, want, got, "the count of %+v differs from the list's", tc.p)
			}
			_, err := f.store.TaskCount(f.ctx, &store.TaskCountParams{Context: []store.ContextMatch{m([]any{"A-1"}, "order")}})
			require.Error(t, err, "an array cannot be matched")
		})

		t.Run("FollowsTransitions", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			only := func(st state.State) []store.StateCount { return []store.StateCount{{State: st, Count: 1}} }
			require.Equal(t, only(state.Pending), f.count(t, &store.TaskCountParams{Namespace: f.ns}))
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(),
				Task: &store.TaskChange{From: state.Pending, To: state.InProgress}, Steps: []*store.StepChange{startStep(steps[0])}})
			require.Equal(t, only(state.InProgress), f.count(t, &store.TaskCountParams{Namespace: f.ns}))
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(),
				Task: &store.TaskChange{From: state.InProgress, To: state.Complete}, Steps: []*store.StepChange{completeStep(steps[0], 1, `{}`)}})
			require.Equal(t, only(state.Complete), f.count(t, &store.TaskCountParams{Namespace: f.ns}))
		})

		t.Run("ClosedStore", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			require.NoError(t, f.store.Close())
			_, err := f.store.TaskCount(f.ctx, &store.TaskCountParams{})
			require.ErrorIs(t, err, store.ErrClosed)
		})
	})
}

func (f *fixture) count(t *testing.T, p *store.TaskCountParams) []store.StateCount {
	t.Helper()
	counts, err := f.store.TaskCount(f.ctx, p)
	require.NoError(t, err)
	return counts
}
