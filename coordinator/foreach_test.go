package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
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
)

// mapTemplate splits the context's items, charges each, and sums the
// charges.
const mapTemplate = `
namespace: fan
name: charges
version: 1.0.0
steps:
  - name: split
    handler: split
  - name: charge
    handler: charge
    depends_on: [split]
    for_each: results.split.items
    retry_limit: 3
    backoff: {initial: 1ms, max: 5ms}
  - name: sum
    handler: sum
    depends_on: [charge]
`

// mapHandlers: split returns {"items": context.items}; charge doubles its
// item, failing the first attempt of every item in context.flaky; sum adds
// the list charge completed with.
func mapHandlers(attempts *sync.Map) map[string]executor.HandlerFunc {
	return map[string]executor.HandlerFunc{
		"split": func(_ context.Context, req *executor.Request) (any, error) {
			var in struct {
				Items json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(req.Context, &in); err != nil {
				return nil, executor.Permanent(err)
			}
			return map[string]any{"items": in.Items}, nil
		},
		"charge": func(_ context.Context, req *executor.Request) (any, error) {
			if req.Item == nil {
				return nil, executor.Permanent(fmt.Errorf("no item"))
			}
			var n int
			if err := json.Unmarshal(req.Item.Value, &n); err != nil {
				return nil, executor.Permanent(err)
			}
			var in struct {
				Flaky []int `json:"flaky"`
				Fail  []int `json:"fail"`
			}
			_ = json.Unmarshal(req.Context, &in)
			if attempts != nil {
				v, _ := attempts.LoadOrStore(req.StepName, new(atomic.Int32))
				v.(*atomic.Int32).Add(1)
			}
			for _, f := range in.Fail {
				if f == n {
					return nil, executor.Permanent(fmt.Errorf("card declined for %d", n))
				}
			}
			for _, f := range in.Flaky {
				if f == n && req.Attempt == 1 {
					return nil, fmt.Errorf("flaky %d", n)
				}
			}
			return map[string]any{"item": n, "charged": 2 * n, "index": req.Item.Index, "count": req.Item.Count, "key": req.IdempotencyKey}, nil
		},
		"sum": func(_ context.Context, req *executor.Request) (any, error) {
			var charges []struct {
				Charged int `json:"charged"`
			}
			if err := json.Unmarshal(req.ParentResults["charge"], &charges); err != nil {
				return nil, executor.Permanent(err)
			}
			total := 0
			for _, c := range charges {
				total += c.Charged
			}
			return map[string]any{"total": total, "n": len(charges)}, nil
		},
	}
}

func resultOf(t *testing.T, s *coordinatorv1.Step) map[string]any {
	t.Helper()
	raw, err := s.GetResults().MarshalJSON()
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

func items(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// A for_each step runs one instance per item, each with its item; a flaky
// instance is retried on its own; the step completes with the instances'
// results in list order and the step after it gets them all.
func TestForEachRunsAnInstancePerItem(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(mapTemplate)
	var attempts sync.Map
	h.startExecutor(8, mapHandlers(&attempts))
	const n = 50
	created := h.create("fan", "charges", map[string]any{"items": items(n), "flaky": []any{3, 17}})
	done := h.waitState(created.GetId(), coordinatorv1.State_STATE_COMPLETE)

	sum := resultOf(t, step(done, "sum"))
	require.EqualValues(t, n, sum["n"])
	require.EqualValues(t, n*(n+1), sum["total"])

	charge := step(done, "charge")
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, charge.GetState())
	var list []map[string]any
	raw, err := charge.GetResults().MarshalJSON()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &list))
	require.Len(t, list, n)
	keys := map[string]bool{}
	for k, r := range list {
		require.EqualValues(t, k+1, r["item"], "results are in list order")
		require.EqualValues(t, k, r["index"])
		require.EqualValues(t, n, r["count"])
		keys[r["key"].(string)] = true
	}
	require.Len(t, keys, n, "each instance has its own idempotency key")

	instances := 0
	for _, s := range done.GetSteps() {
		if s.GetInstanceOf() != "charge" {
			continue
		}
		instances++
		require.Equal(t, fmt.Sprintf("charge[%d]", s.GetIndex()), s.GetName())
		require.Equal(t, coordinatorv1.State_STATE_COMPLETE, s.GetState())
		want := int32(1)
		if s.GetIndex() == 2 || s.GetIndex() == 16 { // items 3 and 17
			want = 2
		}
		require.Equal(t, want, s.GetAttempts(), s.GetName())
		v, _ := attempts.Load(s.GetName())
		require.EqualValues(t, want, v.(*atomic.Int32).Load(), "%s ran once per attempt", s.GetName())
	}
	require.Equal(t, n, instances)
}

// An empty list completes the step at once with an empty list.
func TestForEachEmptyListCompletesAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(mapTemplate)
	h.startExecutor(2, mapHandlers(nil))
	created := h.create("fan", "charges", map[string]any{"items": []any{}})
	done := h.waitState(created.GetId(), coordinatorv1.State_STATE_COMPLETE)
	raw, err := step(done, "charge").GetResults().MarshalJSON()
	require.NoError(t, err)
	require.JSONEq(t, `[]`, string(raw))
	require.EqualValues(t, 0, resultOf(t, step(done, "sum"))["n"])
	require.Len(t, done.GetSteps(), 3, "no instance stored")
}

// A list that is not a list fails the step permanently with an error
// naming the expression and what it gave; nothing runs after it.
func TestForEachOverSomethingNotAList(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(mapTemplate)
	h.startExecutor(2, mapHandlers(nil))
	created := h.create("fan", "charges", map[string]any{"items": map[string]any{"a": 1}})
	failed := h.waitState(created.GetId(), coordinatorv1.State_STATE_ERROR)
	charge := step(failed, "charge")
	require.Equal(t, coordinatorv1.State_STATE_ERROR, charge.GetState())
	require.Equal(t, "InvalidForEach", charge.GetError().GetErrorClass())
	require.Contains(t, charge.GetError().GetMessage(), "for_each results.split.items: evaluates to a map; want a list")
	require.False(t, charge.GetError().GetRetryable())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(failed, "sum").GetState())
	require.Len(t, failed.GetSteps(), 3)
}

// An instance that fails for good fails its for_each step, naming it, and
// the task; the other instances still complete.
func TestForEachInstanceFailureFailsTheStep(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(mapTemplate)
	h.startExecutor(4, mapHandlers(nil))
	created := h.create("fan", "charges", map[string]any{"items": items(5), "fail": []any{4}})
	failed := h.waitState(created.GetId(), coordinatorv1.State_STATE_ERROR)
	charge := step(failed, "charge")
	require.Equal(t, "InstanceFailed", charge.GetError().GetErrorClass())
	require.Contains(t, charge.GetError().GetMessage(), "instance charge[3] failed and will not be retried: card declined for 4")
	require.Equal(t, coordinatorv1.State_STATE_ERROR, step(failed, "charge[3]").GetState())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(failed, "sum").GetState())
}

// An operator who resolves the instances that failed a for_each step (the
// charges made by phone, say) lets the task go on, as resolving any failed
// step does: once none is left exhausted, the step resumes and completes
// with the resolved results in their places, where it stayed failed until
// a task retry. While one is still exhausted, nothing moves.
// The same after a restart between the failure and the resolves, which
// finds the step's instances and its error in the store.
func TestResolvingFailedInstancesResumesTheForEachStep(t *testing.T) {
	t.Parallel()
	t.Run("in one run", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		var attempts sync.Map
		h.startExecutor(4, mapHandlers(&attempts))
		resolveFailedInstances(t, h, &attempts, func() {})
	})
	t.Run("after a restart", func(t *testing.T) {
		t.Parallel()
		h, n := nodeHarness(t, coordinator.Config{ExecutorGrace: 10 * time.Second}, 0)
		var attempts sync.Map
		runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), mapHandlers(&attempts))
		resolveFailedInstances(t, h, &attempts, func() {
			n.crash()
			n.start()
		})
	})
}

func resolveFailedInstances(t *testing.T, h *harness, attempts *sync.Map, restart func()) {
	h.apply(mapTemplate)
	created := h.create("fan", "charges", map[string]any{"items": items(3), "fail": []any{2, 3}})
	id := created.GetId()
	// Both failing instances were dispatched at once (4 slots): the second
	// one's result is recorded after the first failed the step.
	require.Eventually(t, func() bool {
		task := h.get(id)
		return task.GetState() == coordinatorv1.State_STATE_ERROR &&
			step(task, "charge[1]").GetState() == coordinatorv1.State_STATE_ERROR &&
			step(task, "charge[2]").GetState() == coordinatorv1.State_STATE_ERROR
	}, 20*time.Second, 5*time.Millisecond)
	restart()

	resolve := func(name string, charged int) *coordinatorv1.Task {
		t.Helper()
		results, err := structpb.NewValue(map[string]any{"charged": charged})
		require.NoError(t, err)
		resp, err := h.client.ResolveStep(h.ctx, &coordinatorv1.ResolveStepRequest{
			TaskId: id, StepName: name, Reason: "charged by phone", Results: results,
		})
		require.NoError(t, err)
		return resp.GetTask()
	}
	after := resolve("charge[1]", 100)
	require.Equal(t, coordinatorv1.State_STATE_ERROR, after.GetState(), "charge[2] still fails the step")
	require.Equal(t, coordinatorv1.State_STATE_ERROR, step(after, "charge").GetState())

	resolve("charge[2]", 1000)
	done := h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 2+100+1000, resultOf(t, step(done, "sum"))["total"])
	charge := step(done, "charge")
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, charge.GetState())
	var path []string
	for _, tr := range charge.GetTransitions() {
		path = append(path, statepbName(tr.GetFromState())+"→"+statepbName(tr.GetToState()))
	}
	require.Equal(t, []string{"pending→in_progress", "in_progress→error", "error→pending", "pending→in_progress", "in_progress→complete"}, path)
	require.Equal(t, "resumed after charge[2] was resolved manually", charge.GetTransitions()[2].GetReason())
	require.Equal(t, "attempt 2: all 3 instances complete", charge.GetTransitions()[4].GetReason())
	for k, want := range []int32{1, 1, 1} {
		name := fmt.Sprintf("charge[%d]", k)
		v, _ := attempts.Load(name)
		require.EqualValues(t, want, v.(*atomic.Int32).Load(), "%s ran once: a resolved instance is not run again", name)
	}
}

// Rerunning one instance runs it again with a new idempotency key and
// starts its for_each step again, which keeps the other instances'
// results; the step after it runs again.
func TestRerunOneInstance(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(mapTemplate)
	var attempts sync.Map
	h.startExecutor(4, mapHandlers(&attempts))
	created := h.create("fan", "charges", map[string]any{"items": items(4)})
	done := h.waitState(created.GetId(), coordinatorv1.State_STATE_COMPLETE)
	before := resultOf(t, step(done, "charge[2]"))["key"]

	_, err := h.client.RerunStep(h.ctx, &coordinatorv1.RerunStepRequest{TaskId: created.GetId(), StepName: "charge[2]", Reason: "refund issued"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		task := h.get(created.GetId())
		return task.GetState() == coordinatorv1.State_STATE_COMPLETE && step(task, "sum").GetAttempts() == 2
	}, 20*time.Second, 5*time.Millisecond)
	again := h.get(created.GetId())
	for k := range 4 {
		name := fmt.Sprintf("charge[%d]", k)
		v, _ := attempts.Load(name)
		want := int32(1)
		if k == 2 {
			want = 2
		}
		require.EqualValues(t, want, v.(*atomic.Int32).Load(), name)
	}
	require.NotEqual(t, before, resultOf(t, step(again, "charge[2]"))["key"], "a rerun gets a new idempotency key")
	require.EqualValues(t, 20, resultOf(t, step(again, "sum"))["total"])

	_, err = h.client.RerunStep(h.ctx, &coordinatorv1.RerunStepRequest{TaskId: created.GetId(), StepName: "charge[9]"})
	require.Equal(t, codes.NotFound, status.Code(err), "err = %v", err)
}

// A coordinator that crashes while instances run loads the task, computes
// the list again from stored results and finishes it: every instance
// completes, none runs twice for one attempt.
func TestForEachSurvivesRestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{ExecutorGrace: 10 * time.Second}, 0)
	h.apply(mapTemplate)
	release := make(chan struct{})
	var started atomic.Int32
	handlers := mapHandlers(nil)
	charge := handlers["charge"]
	handlers["charge"] = func(ctx context.Context, req *executor.Request) (any, error) {
		started.Add(1)
		select {
		case <-release:
			return charge(ctx, req)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 3}, listen(t), handlers)
	created := h.create("fan", "charges", map[string]any{"items": items(10)})
	require.Eventually(t, func() bool { return started.Load() == 3 }, 20*time.Second, 5*time.Millisecond)

	n.crash()
	n.start()
	close(release)
	done := h.waitState(created.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 110, resultOf(t, step(done, "sum"))["total"])
	for _, s := range done.GetSteps() {
		if strings.HasPrefix(s.GetName(), "charge[") {
			require.EqualValues(t, 1, s.GetAttempts(), "%s: adopted or run once", s.GetName())
		}
	}
}

// Two for_each steps at the root, with more instances than executor
// slots: a step started in the task's first dispatch makes its instances
// after that commit, and instances that wait for a slot are stored all
// the same. Each step completes with one result per item of its list.
func TestForEachAtTheRootWithFewSlots(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(`
namespace: fan
name: roots
version: 1.0.0
steps:
  - name: a
    handler: noop
  - name: b
    handler: sleep
    config: {ms: 2}
    for_each: "[0, 1, 2, 3, 4, 5, 6, 7].filter(i, i < context.n % 9)"
  - name: c
    handler: flaky
    config: {fail_times: 1}
    for_each: "[0, 1, 2].filter(i, i < context.n % 4)"
    backoff: {initial: 1ms, max: 5ms}
  - name: d
    handler: noop
    depends_on: [a, b, c]
`)
	h.startExecutor(4, nil)
	const tasks = 40
	ids := make([]string, tasks)
	for n := range tasks {
		ids[n] = h.create("fan", "roots", map[string]any{"n": n}).GetId()
	}
	for n, id := range ids {
		done := h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
		for name, want := range map[string]int{"b": n % 9, "c": n % 4} {
			raw, err := step(done, name).GetResults().MarshalJSON()
			require.NoError(t, err)
			var list []json.RawMessage
			require.NoError(t, json.Unmarshal(raw, &list))
			require.Len(t, list, want, "task %d step %s", n, name)
		}
		require.Len(t, done.GetSteps(), 4+n%9+n%4, "task %d: one stored instance per item", n)
	}
}

// A for_each step that ends the template completes its task, whether its
// list is empty (it completes as it starts) or not.
func TestForEachAsTheLastStepCompletesTheTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(`
namespace: fan
name: last
version: 1.0.0
steps:
  - name: a
    handler: noop
  - name: each
    handler: noop
    depends_on: [a]
    for_each: context.items
  - name: root_each
    handler: noop
    for_each: context.items
`)
	h.startExecutor(4, nil)
	for _, n := range []int{0, 3} {
		created := h.create("fan", "last", map[string]any{"items": items(n)})
		done := h.waitState(created.GetId(), coordinatorv1.State_STATE_COMPLETE)
		require.Len(t, done.GetSteps(), 3+2*n)
	}
}

// Two for_each steps at the root, their lists empty or not: a start in the
// task's first dispatch never makes instances in that change, so the task
// records one move to in_progress and one to complete. Under a task-level
// concurrency key a creation whose admission is refused stores its
// for_each steps pending, and they start once the key frees.
func TestForEachStartsInTheFirstDispatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(`
namespace: fan
name: tworoots
version: 1.0.0
concurrency:
  - key: context.customer
    max_running: 1
steps:
  - name: s00
    handler: flaky
    config: {fail_times: 1}
    for_each: "[0, 1, 2].filter(i, i < context.n % 4)"
    backoff: {initial: 1ms, max: 5ms}
  - name: s01
    handler: noop
    for_each: "[0, 1].filter(i, i < context.n % 3)"
`)
	h.startExecutor(4, nil)
	var ids []string
	for n := range 12 {
		ids = append(ids, h.create("fan", "tworoots", map[string]any{"n": n, "customer": fmt.Sprint("c", n%2)}).GetId())
	}
	for n, id := range ids {
		done := h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
		var moves []string
		for _, tr := range done.GetTransitions() {
			moves = append(moves, tr.GetFromState().String()+"→"+tr.GetToState().String())
		}
		require.Equal(t, []string{"STATE_PENDING→STATE_IN_PROGRESS", "STATE_IN_PROGRESS→STATE_COMPLETE"}, moves, "task %d", n)
		require.Len(t, done.GetSteps(), 2+n%4+n%3, "task %d", n)
	}
}
