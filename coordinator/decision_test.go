package coordinator_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// shippingTemplate branches at route: customs → paperwork on one side,
// domestic on the other; ship joins both sides.
const shippingTemplate = `
namespace: decide
name: shipping
version: 1.0.0
steps:
  - name: route
    handler: route
    decision: true
  - name: customs
    handler: noop
    depends_on: [route]
  - name: paperwork
    handler: noop
    depends_on: [customs]
  - name: domestic
    handler: noop
    depends_on: [route]
  - name: ship
    handler: parents
    depends_on: [paperwork, domestic]
`

// decisionHandlers: route returns the context's "raw" result as given, or
// {"next": context.next}; parents returns the results its parents sent.
func decisionHandlers() map[string]executor.HandlerFunc {
	return map[string]executor.HandlerFunc{
		"route": func(_ context.Context, req *executor.Request) (any, error) {
			var in struct {
				Raw  *string  `json:"raw"`
				Next []string `json:"next"`
			}
			if err := json.Unmarshal(req.Context, &in); err != nil {
				return nil, executor.Permanent(err)
			}
			if in.Raw != nil {
				return json.RawMessage(*in.Raw), nil
			}
			return map[string]any{"next": in.Next}, nil
		},
		"parents": func(_ context.Context, req *executor.Request) (any, error) {
			return req.ParentResults, nil
		},
	}
}

func newDecisionHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.apply(shippingTemplate)
	h.startExecutor(4, decisionHandlers())
	return h
}

func states(task *coordinatorv1.Task) map[string]coordinatorv1.State {
	out := map[string]coordinatorv1.State{}
	for _, s := range task.GetSteps() {
		out[s.GetName()] = s.GetState()
	}
	return out
}

// A decision choosing one of two branches: the other is skipped to its
// end, the join runs after the taken branch only, the task completes, and
// the stored history holds each skip, written with the decision's result.
func TestDecisionTakesOneBranch(t *testing.T) {
	t.Parallel()
	h := newDecisionHarness(t)
	const (
		done    = coordinatorv1.State_STATE_COMPLETE
		skipped = coordinatorv1.State_STATE_SKIPPED
	)
	for _, tc := range []struct {
		next string
		want map[string]coordinatorv1.State
	}{
		{"customs", map[string]coordinatorv1.State{"route": done, "customs": done, "paperwork": done, "domestic": skipped, "ship": done}},
		{"domestic", map[string]coordinatorv1.State{"route": done, "customs": skipped, "paperwork": skipped, "domestic": done, "ship": done}},
	} {
		t.Run(tc.next, func(t *testing.T) {
			created := h.create("decide", "shipping", map[string]any{"next": []any{tc.next}})
			task := h.waitState(created.GetId(), coordinatorv1.State_STATE_COMPLETE)
			require.Equal(t, tc.want, states(task))

			// Every skip is stored, from pending, with its reason, in the
			// write that completed route (one change: one time).
			route := step(task, "route")
			var routeDone *coordinatorv1.Transition
			for _, tr := range route.GetTransitions() {
				if tr.GetToState() == done {
					routeDone = tr
				}
			}
			require.NotNil(t, routeDone)
			for name, st := range tc.want {
				if st != skipped {
					continue
				}
				trs := step(task, name).GetTransitions()
				require.Len(t, trs, 1, name)
				require.Equal(t, coordinatorv1.State_STATE_PENDING, trs[0].GetFromState(), name)
				require.Equal(t, skipped, trs[0].GetToState(), name)
				require.Equal(t, routeDone.GetAt().AsTime(), trs[0].GetAt().AsTime(), "%s is skipped in route's write", name)
				require.Greater(t, trs[0].GetSeq(), routeDone.GetSeq(), name)
				require.Equal(t, int32(0), step(task, name).GetAttempts(), "%s never ran", name)
			}
			first := map[string]string{"customs": "domestic", "domestic": "customs"}[tc.next]
			require.Equal(t, "not taken: not chosen by decision step route", step(task, first).GetTransitions()[0].GetReason())
			if tc.next == "domestic" {
				require.Equal(t, "not taken: its parent customs was skipped", step(task, "paperwork").GetTransitions()[0].GetReason())
			}

			// The join got both parents' results, the skipped one's as null.
			var got map[string]any
			raw, err := step(task, "ship").GetResults().MarshalJSON()
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(raw, &got))
			require.Len(t, got, 2)
			if tc.next == "customs" {
				require.Nil(t, got["domestic"])
				require.NotNil(t, got["paperwork"])
			} else {
				require.Nil(t, got["paperwork"])
				require.NotNil(t, got["domestic"])
			}

			// The store agrees with the API.
			stored, err := h.store.StepList(h.ctx, created.GetId())
			require.NoError(t, err)
			for _, s := range stored {
				require.Equal(t, tc.want[s.Name].String(), "STATE_"+upper(string(s.State)), s.Name)
			}
		})
	}
}

// Choosing none skips every branch and the join: the task completes with
// only the decision run.
func TestDecisionChoosingNoneSkipsEverything(t *testing.T) {
	t.Parallel()
	h := newDecisionHarness(t)
	created := h.create("decide", "shipping", map[string]any{"next": []any{}})
	task := h.waitState(created.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, map[string]coordinatorv1.State{
		"route":     coordinatorv1.State_STATE_COMPLETE,
		"customs":   coordinatorv1.State_STATE_SKIPPED,
		"paperwork": coordinatorv1.State_STATE_SKIPPED,
		"domestic":  coordinatorv1.State_STATE_SKIPPED,
		"ship":      coordinatorv1.State_STATE_SKIPPED,
	}, states(task))
	require.Equal(t, "not taken: its parents paperwork, domestic were skipped", step(task, "ship").GetTransitions()[0].GetReason())
}

// A result that does not say which children to run fails the decision at
// once, permanently, naming the step and what is wrong; nothing below it
// moves.
func TestDecisionBadNextFailsPermanently(t *testing.T) {
	t.Parallel()
	h := newDecisionHarness(t)
	for _, tc := range []struct {
		name, raw, want string
	}{
		{"unknown name", `{"next": ["customs", "teleport"]}`, `decision step route: "next" names "teleport", which is not a child of this step (children: customs, domestic)`},
		{"grandchild", `{"next": ["paperwork"]}`, `"next" names "paperwork", which is not a child of this step`},
		{"missing", `{"go": ["customs"]}`, `decision step route: the result has no "next"`},
		{"not a list", `{"next": "customs"}`, `decision step route: "next" must be a list of child step names, got "customs"`},
		{"not strings", `{"next": [1, 2]}`, `decision step route: "next" must be a list of child step names`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			created := h.create("decide", "shipping", map[string]any{"raw": tc.raw})
			task := h.waitState(created.GetId(), coordinatorv1.State_STATE_ERROR)
			route := step(task, "route")
			require.Equal(t, coordinatorv1.State_STATE_ERROR, route.GetState())
			require.Equal(t, int32(1), route.GetAttempts(), "not retried though retry_limit is 3")
			require.Contains(t, route.GetError().GetMessage(), tc.want)
			require.Equal(t, "InvalidDecision", route.GetError().GetErrorClass())
			require.False(t, route.GetError().GetRetryable())
			for _, name := range []string{"customs", "paperwork", "domestic", "ship"} {
				require.Equal(t, coordinatorv1.State_STATE_PENDING, step(task, name).GetState(), name)
				require.Empty(t, step(task, name).GetTransitions(), name)
			}
		})
	}
}

// Registration refuses a decision step with no child, naming it.
func TestDecisionNeedsAChild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tmpl, err := template.Parse([]byte(`
namespace: decide
name: leaf
version: 1.0.0
steps:
  - name: a
    handler: noop
  - name: b
    handler: route
    decision: true
    depends_on: [a]
`))
	require.NoError(t, err)
	p, err := templatepb.ToProto(tmpl)
	require.NoError(t, err)
	_, err = h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: p})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.ErrorContains(t, err, `step "b": decision: a decision step needs at least one child`)

	// The decision flag comes back from the API as registered.
	got := h.apply(shippingTemplate)
	require.True(t, got.GetSteps()[0].GetDecision())
	require.False(t, got.GetSteps()[1].GetDecision())
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// A coordinator that restarts while a decision's branch still runs loads
// the task from the store, choice and skips included (the decision's result
// is read again while its children are not loaded yet), and finishes it:
// the join waits for the taken branch only.
func TestDecisionSurvivesRestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{ExecutorGrace: 10 * time.Second}, 0)
	h.apply(strings.Replace(shippingTemplate, "name: customs\n    handler: noop", "name: customs\n    handler: hold", 1))
	release := make(chan struct{})
	handlers := decisionHandlers()
	handlers["hold"] = func(ctx context.Context, _ *executor.Request) (any, error) {
		select {
		case <-release:
			return map[string]any{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), handlers)
	created := h.create("decide", "shipping", map[string]any{"next": []any{"customs"}})
	require.Eventually(t, func() bool {
		return step(h.get(created.GetId()), "customs").GetState() == coordinatorv1.State_STATE_IN_PROGRESS
	}, 20*time.Second, 5*time.Millisecond)

	n.crash()
	n.start()
	require.Eventually(t, func() bool { return n.coord.AttemptExecutor(created.GetId(), "customs") == "exec-1" },
		20*time.Second, 5*time.Millisecond, "the restarted coordinator adopted the running attempt")
	task := h.get(created.GetId())
	require.Equal(t, coordinatorv1.State_STATE_SKIPPED, step(task, "domestic").GetState())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(task, "ship").GetState())
	require.Equal(t, []string{"paperwork"}, step(task, "ship").GetWaiting().GetOn(), "ship waits for the taken branch only")

	close(release)
	done := h.waitState(created.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, map[string]coordinatorv1.State{
		"route": coordinatorv1.State_STATE_COMPLETE, "customs": coordinatorv1.State_STATE_COMPLETE,
		"paperwork": coordinatorv1.State_STATE_COMPLETE, "domestic": coordinatorv1.State_STATE_SKIPPED,
		"ship": coordinatorv1.State_STATE_COMPLETE,
	}, states(done))
	require.EqualValues(t, 1, step(done, "route").GetAttempts(), "the decision ran once")
}

// Rerunning a decision lets it choose again: its skipped branch is reset
// with the rest of its descendants, and this time the other side runs.
func TestRerunDecisionChoosesAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(shippingTemplate)
	var runs atomic.Int32
	handlers := decisionHandlers()
	handlers["route"] = func(context.Context, *executor.Request) (any, error) {
		if runs.Add(1) == 1 {
			return map[string]any{"next": []string{"customs"}}, nil
		}
		return map[string]any{"next": []string{"domestic"}}, nil
	}
	h.startExecutor(4, handlers)
	task := h.create("decide", "shipping", map[string]any{"order": 1})
	first := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, coordinatorv1.State_STATE_SKIPPED, states(first)["domestic"])

	_, err := rerun(h, task.GetId(), "route", "wrong route")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got := h.get(task.GetId())
		return got.GetState() == coordinatorv1.State_STATE_COMPLETE && states(got)["domestic"] == coordinatorv1.State_STATE_COMPLETE
	}, 10*time.Second, 5*time.Millisecond)
	got := states(h.get(task.GetId()))
	require.Equal(t, coordinatorv1.State_STATE_SKIPPED, got["customs"], "the branch not taken the second time")
	require.Equal(t, coordinatorv1.State_STATE_SKIPPED, got["paperwork"])
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, got["ship"])
	require.EqualValues(t, 2, runs.Load())
}

// An operator who resolves a failed decision step chooses its branches in
// the results, {"next": [...]}, as its handler would have: the others are
// skipped (where every branch ran, shipping both ways). A bad choice is
// refused naming it and changes nothing; results without "next" still
// take every branch.
func TestResolvedDecisionTakesTheBranchesItsResultsName(t *testing.T) {
	t.Parallel()
	h := newDecisionHarness(t)
	failed := func(n int) string {
		created := h.create("decide", "shipping", map[string]any{"raw": `{"go": ["customs"]}`, "n": n})
		h.waitState(created.GetId(), coordinatorv1.State_STATE_ERROR)
		return created.GetId()
	}
	resolve := func(id string, results map[string]any) error {
		v, err := structpb.NewValue(results)
		require.NoError(t, err)
		_, err = h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{TaskId: id, StepName: "route", Reason: "routed by hand", Results: v})
		return err
	}

	id := failed(1)
	err := resolve(id, map[string]any{"next": []any{"domestic", "teleport"}})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "err = %v", err)
	require.Contains(t, status.Convert(err).Message(), `results: decision step route: "next" names "teleport", which is not a child of this step (children: customs, domestic)`)
	require.Equal(t, coordinatorv1.State_STATE_ERROR, step(h.get(id), "route").GetState(), "a refused resolve changes nothing")

	require.NoError(t, resolve(id, map[string]any{"next": []any{"domestic"}}))
	done := h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, map[string]coordinatorv1.State{
		"route":     coordinatorv1.State_STATE_RESOLVED_MANUALLY,
		"customs":   coordinatorv1.State_STATE_SKIPPED,
		"paperwork": coordinatorv1.State_STATE_SKIPPED,
		"domestic":  coordinatorv1.State_STATE_COMPLETE,
		"ship":      coordinatorv1.State_STATE_COMPLETE,
	}, states(done))
	require.Equal(t, "not taken: not chosen by decision step route", step(done, "customs").GetTransitions()[0].GetReason())

	id = failed(2)
	require.NoError(t, resolve(id, map[string]any{"receipt": "r-1"}))
	done = h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
	for _, name := range []string{"customs", "paperwork", "domestic", "ship"} {
		require.Equal(t, coordinatorv1.State_STATE_COMPLETE, step(done, name).GetState(), "%s: without next every branch runs", name)
	}
}
