package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// childTemplate is a child that echoes what it was given; parentTemplate
// quotes, runs the child with a context built from the quote and its own
// context, then finishes.
const (
	childTemplate = `
namespace: test
name: %s
version: 1.0.0
steps:
  - name: charge
    handler: %s
`
	parentTemplate = `
namespace: test
name: %s
version: 1.0.0
steps:
  - name: quote
    handler: quote
  - name: call
    depends_on: [quote]
    task: test/%s
    context:
      amount: results.quote.total
      customer: context.customer
    retry_limit: 2
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
  - name: after
    depends_on: [call]
    handler: echo
`
)

func childHandlers(extra map[string]executor.HandlerFunc) map[string]executor.HandlerFunc {
	out := map[string]executor.HandlerFunc{
		"quote": func(context.Context, *executor.Request) (any, error) { return map[string]any{"total": 42}, nil },
		"boom": func(context.Context, *executor.Request) (any, error) {
			return nil, executor.Permanent(errors.New("card declined"))
		},
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// childrenOf lists the tasks of a child template, newest first.
func childrenOf(t *testing.T, h *harness, name string) []*coordinatorv1.Task {
	t.Helper()
	resp, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{Namespace: "test", Name: name})
	require.NoError(t, err)
	return resp.GetTasks()
}

// A child step creates its child with the mapped context, holds no
// executor slot meanwhile, and completes with the child's results; the
// parent and the child name each other.
func TestChildTaskCompletesParentStep(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(2, childHandlers(nil))
	h.apply(fmt.Sprintf(childTemplate, "child_ok", "echo"))
	h.apply(fmt.Sprintf(parentTemplate, "parent_ok", "child_ok"))
	task := h.create("test", "parent_ok", map[string]any{"customer": "c-1"})

	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	call := step(done, "call")
	require.EqualValues(t, 1, call.GetAttempts())
	require.NotEmpty(t, call.GetChildTaskId())
	results := call.GetResults().GetStructValue().AsMap()
	charge := results["charge"].(map[string]any)
	require.Equal(t, map[string]any{"amount": float64(42), "customer": "c-1"}, charge["context"], "the child got the mapped context")
	require.Contains(t, fmt.Sprint(step(done, "after").GetResults().AsInterface()), "charge", "the next step got the child's results")

	kids := childrenOf(t, h, "child_ok")
	require.Len(t, kids, 1, "one child")
	child := h.get(kids[0].GetId())
	require.Equal(t, call.GetChildTaskId(), child.GetId())
	require.Equal(t, task.GetId(), child.GetParentTaskId())
	require.Equal(t, call.GetId(), child.GetParentStepId())
	require.Equal(t, "call", child.GetParentStep())
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, child.GetState())

	var started bool
	for _, tr := range call.GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS {
			started = true
			require.Equal(t, "test/child_ok", tr.GetMetadata().AsMap()["child_task"])
			require.Empty(t, tr.GetMetadata().AsMap()["executor"], "no executor runs a child step")
		}
	}
	require.True(t, started)
}

// A child that fails fails its parent's step under the step's retry
// policy: the retry creates a new child; with no attempt left the parent
// fails.
func TestChildTaskFailureRetriesWithANewChild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(2, childHandlers(nil))
	h.apply(fmt.Sprintf(childTemplate, "child_fails", "boom"))
	h.apply(fmt.Sprintf(parentTemplate, "parent_fails", "child_fails"))
	task := h.create("test", "parent_fails", map[string]any{"customer": "c-2"})

	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	call := step(failed, "call")
	require.EqualValues(t, 2, call.GetAttempts())
	require.Equal(t, "ChildTaskFailed", call.GetError().GetErrorClass())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(failed, "after").GetState())

	kids := childrenOf(t, h, "child_fails")
	require.Len(t, kids, 2, "one child per attempt")
	require.NotEqual(t, kids[0].GetId(), kids[1].GetId())
	require.Equal(t, kids[0].GetId(), call.GetChildTaskId(), "the step shows its latest attempt's child")
	for _, k := range kids {
		require.Equal(t, coordinatorv1.State_STATE_ERROR, k.GetState())
		require.Equal(t, task.GetId(), k.GetParentTaskId())
	}
	require.Contains(t, call.GetError().GetMessage(), kids[0].GetId())
}

// An operator who retries a failed child to completion settles the
// parent's step that failed with it, where the step stayed failed and a
// retry of the parent made a new child to do the work again: the step is
// resolved with the child's results and the parent goes on. One child in
// all.
func TestRetriedChildSettlesTheStepThatFailedWithIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(2, childHandlers(map[string]executor.HandlerFunc{
		"fail_once": func(_ context.Context, req *executor.Request) (any, error) {
			if req.Attempt == 1 {
				return nil, executor.Permanent(errors.New("card declined"))
			}
			return map[string]any{"charged": 42}, nil
		},
	}))
	h.apply(fmt.Sprintf(childTemplate, "child_once", "fail_once"))
	h.apply(`
namespace: test
name: parent_once
version: 1.0.0
steps:
  - name: call
    task: test/child_once
    retry_limit: 1
  - name: after
    depends_on: [call]
    handler: echo
`)
	task := h.create("test", "parent_once", map[string]any{})
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	require.Equal(t, "ChildTaskFailed", step(failed, "call").GetError().GetErrorClass())
	kids := childrenOf(t, h, "child_once")
	require.Len(t, kids, 1)
	child := kids[0].GetId()
	require.Equal(t, coordinatorv1.State_STATE_ERROR, h.get(child).GetState())

	_, err := h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: child, Reason: "card fixed"})
	require.NoError(t, err)
	h.waitState(child, coordinatorv1.State_STATE_COMPLETE)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	call := step(done, "call")
	require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, call.GetState())
	require.EqualValues(t, 1, call.GetAttempts(), "no new attempt, no new child")
	require.Equal(t, map[string]any{"charged": float64(42)}, call.GetResults().GetStructValue().AsMap()["charge"])
	last := call.GetTransitions()[len(call.GetTransitions())-1]
	require.Equal(t, "child task "+child+" completed after attempt 1 failed with it", last.GetReason())
	require.Equal(t, child, last.GetMetadata().AsMap()["child_task_id"])
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, step(done, "after").GetState())
	require.Len(t, childrenOf(t, h, "child_once"), 1, "the parent went on with the same child")
}

// Cancelling the parent cancels its running child.
func TestCancelParentCancelsChild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	h.startExecutor(2, childHandlers(map[string]executor.HandlerFunc{"gated": g.handler()}))
	h.apply(fmt.Sprintf(childTemplate, "child_held", "gated"))
	h.apply(fmt.Sprintf(parentTemplate, "parent_cancelled", "child_held"))
	task := h.create("test", "parent_cancelled", map[string]any{"customer": "c-3"})
	g.waitStarted(t)
	kids := childrenOf(t, h, "child_held")
	require.Len(t, kids, 1)
	call := step(h.get(task.GetId()), "call")
	require.Equal(t, "child_task", call.GetWaiting().GetReason())
	require.Equal(t, "test/child_held", call.GetWaiting().GetKey())
	require.Equal(t, kids[0].GetId(), call.GetChildTaskId())

	_, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId(), Reason: "customer left"})
	require.NoError(t, err)
	child := h.waitState(kids[0].GetId(), coordinatorv1.State_STATE_CANCELLED)
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, step(child, "charge").GetState())
	parent := h.get(task.GetId())
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, parent.GetState())
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, step(parent, "call").GetState())
	var reason string
	for _, tr := range child.GetTransitions() {
		reason = tr.GetReason()
	}
	// The child's step started before the look that created the child had
	// returned (its first dispatch rides in its creation), so that look may
	// find the step no longer waiting and cancel the child first, saying
	// so; either way the parent's cancel is why (seen under -race with the
	// CPU loaded).
	require.Regexp(t, `parent task `+task.GetId()+` (cancelled|no longer waits for it \(step call ended\))`, reason)
}

// A child template that does not exist, or a template that runs itself,
// is refused at registration with InvalidArgument naming the step's task,
// and nothing is stored; a child whose context its template refuses fails
// the step for good, creating nothing.
func TestChildTaskBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(2, childHandlers(nil))
	for name, c := range map[string]struct{ yaml, says string }{
		"missing": {fmt.Sprintf(parentTemplate, "parent_missing", "nowhere"), `step "call": task: template test/nowhere is not registered`},
		"missing version": {`
namespace: test
name: parent_missing_version
version: 1.0.0
steps:
  - name: call
    task: test/child_v@2.0.0
`, `template test/child_v@2.0.0 is not registered`},
		"itself": {`
namespace: test
name: parent_self
version: 1.0.0
steps:
  - name: call
    task: test/parent_self
`, "cannot run its own template"},
		"bad expression": {`
namespace: test
name: parent_bad_expr
version: 1.0.0
steps:
  - name: call
    task: test/child_v
    context: {amount: "results."}
`, `step "call": context.amount:`},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "missing version" {
				h.apply(fmt.Sprintf(childTemplate, "child_v", "echo"))
			}
			tm := protoTemplate(t, c.yaml)
			_, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: tm})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			require.Contains(t, err.Error(), c.says)
			_, err = h.client.GetTemplate(h.ctx, &coordinatorv1.GetTemplateRequest{Namespace: "test", Name: tm.GetName()})
			require.Equal(t, codes.NotFound, status.Code(err), "nothing stored")
		})
	}

	// The child's schema refuses the mapped context: the step fails
	// permanently and no child is stored.
	h.apply(`
namespace: test
name: child_strict
version: 1.0.0
context_schema:
  type: object
  required: [amount]
  properties:
    amount: {type: string}
steps:
  - name: charge
    handler: echo
`)
	h.apply(fmt.Sprintf(parentTemplate, "parent_strict", "child_strict"))
	task := h.create("test", "parent_strict", map[string]any{"customer": "c-4"})
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	call := step(failed, "call")
	require.Equal(t, "ChildTaskRefused", call.GetError().GetErrorClass())
	require.False(t, call.GetError().GetRetryable())
	require.EqualValues(t, 1, call.GetAttempts(), "a refusal is not retried")
	require.Contains(t, call.GetError().GetMessage(), "amount")
	require.Empty(t, childrenOf(t, h, "child_strict"))
}

// childCreateFails makes the creation of child tasks fail, after writing
// them or not, as a connection lost around the commit would.
type childCreateFails struct {
	store.Store
	write bool
	hits  atomic.Int32
}

func (s *childCreateFails) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.Task, bool, error) {
	if p.Task.ParentTaskID == "" {
		return s.Store.TaskCreate(ctx, p)
	}
	s.hits.Add(1)
	if s.write {
		if _, _, err := s.Store.TaskCreate(ctx, p); err != nil {
			return nil, false, err
		}
	}
	return nil, false, fmt.Errorf("connection reset during commit: %w", store.ErrUnavailable)
}

// A coordinator that stops with a child step in flight, its child created
// or not (or created without its knowing), leaves the parent to the next
// coordinator, which finds the child by its key or creates it, once, and
// settles the step when the child completes.
func TestChildTaskSurvivesRestart(t *testing.T) {
	t.Parallel()
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		st := openSQLite(t)
		testChildTaskSurvivesRestart(t, func() store.Store { return st })
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		schema := newPostgresSchema(t)
		testChildTaskSurvivesRestart(t, func() store.Store { return openPostgres(t, schema) })
	})
}

func testChildTaskSurvivesRestart(t *testing.T, open func() store.Store) {
	for _, written := range []bool{false, true} {
		st := open()
		name := fmt.Sprintf("restart_written_%v", written)
		flaky := &childCreateFails{Store: st, write: written}
		a := takeoverPeer(t, flaky, "coord-a-"+name)
		_, stopExec := a.startExecutor(2, childHandlers(nil))
		a.apply(fmt.Sprintf(childTemplate, "child_"+name, "echo"))
		a.apply(fmt.Sprintf(parentTemplate, "parent_"+name, "child_"+name))
		task := a.create("test", "parent_"+name, map[string]any{"customer": "c-5"})
		require.Eventually(t, func() bool { return flaky.hits.Load() > 0 }, 10*time.Second, 5*time.Millisecond, "the child's creation was tried")
		stopExec() // while a still takes its last results, so it leaves none to resend
		stopNow, cancel := context.WithCancel(context.Background())
		cancel()
		require.NoError(t, a.coord.Stop(stopNow))

		b := takeoverPeer(t, st, "coord-b-"+name)
		// The executor connects once the child exists, so the child's step
		// is queued for it before it registers. (Started at once, it may
		// register between the child's slot request and its queueing, a
		// race of the slot pool that leaves the step waiting for the next
		// release of a slot for its handler.)
		require.Eventually(t, func() bool { return len(childrenOf(t, b, "child_"+name)) == 1 }, 10*time.Second, 5*time.Millisecond)
		b.startExecutor(2, childHandlers(nil))
		done := b.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
		kids := childrenOf(t, b, "child_"+name)
		require.Len(t, kids, 1, "exactly one child (written before the stop: %v)", written)
		call := step(done, "call")
		require.Equal(t, kids[0].GetId(), call.GetChildTaskId())
		require.EqualValues(t, 1, call.GetAttempts(), "the same attempt carried on")
		require.Contains(t, call.GetResults().GetStructValue().AsMap(), "charge")
	}
}

// A task that fails while a child step waits ends that step and cancels
// its child: nothing will use the child's results.
func TestFailedParentCancelsChild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	failNow := make(chan struct{})
	h.startExecutor(2, childHandlers(map[string]executor.HandlerFunc{
		"gated": g.handler(),
		"boom_later": func(ctx context.Context, _ *executor.Request) (any, error) {
			select {
			case <-failNow:
			case <-ctx.Done():
			}
			return nil, executor.Permanent(errors.New("out of stock"))
		},
	}))
	h.apply(fmt.Sprintf(childTemplate, "child_orphaned", "gated"))
	h.apply(`
namespace: test
name: parent_failing
version: 1.0.0
steps:
  - name: call
    task: test/child_orphaned
  - name: reserve
    handler: boom_later
`)
	task := h.create("test", "parent_failing", map[string]any{})
	g.waitStarted(t)
	close(failNow)

	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	require.Equal(t, coordinatorv1.State_STATE_ERROR, step(failed, "call").GetState())
	require.Equal(t, "TaskFailed", step(failed, "call").GetError().GetErrorClass())
	kids := childrenOf(t, h, "child_orphaned")
	require.Len(t, kids, 1)
	h.waitState(kids[0].GetId(), coordinatorv1.State_STATE_CANCELLED)
}

// Rerunning a child step runs a new child for the new run; the first
// child stays as it was.
func TestRerunChildStepCreatesANewChild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startExecutor(2, childHandlers(nil))
	h.apply(fmt.Sprintf(childTemplate, "child_rerun", "echo"))
	h.apply(fmt.Sprintf(parentTemplate, "parent_rerun", "child_rerun"))
	task := h.create("test", "parent_rerun", map[string]any{"customer": "c-6"})
	first := step(h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE), "call").GetChildTaskId()

	_, err := h.client.RerunStep(h.ctx, &coordinatorv1.RerunStepRequest{TaskId: task.GetId(), StepName: "call", Reason: "charge again"})
	require.NoError(t, err)
	var second string
	require.Eventually(t, func() bool {
		got := h.get(task.GetId())
		second = step(got, "call").GetChildTaskId()
		return got.GetState() == coordinatorv1.State_STATE_COMPLETE && second != first
	}, 20*time.Second, 5*time.Millisecond)
	kids := childrenOf(t, h, "child_rerun")
	require.Len(t, kids, 2)
	require.Equal(t, second, kids[0].GetId(), "newest first")
	require.Equal(t, first, kids[1].GetId())
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, kids[1].GetState())
}

// A result reported for a child step, through any coordinator (forwarded
// to the parent's owner), completes nothing: it only makes the owner look
// at the child, which is how a child's coordinator tells of its end.
func TestReportForAChildStepOnlyLooksAtTheChild(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	a := peerHarness(t, st, "coord-a")
	b := peerHarness(t, st, "coord-b")
	g := newGate()
	a.startExecutor(2, childHandlers(map[string]executor.HandlerFunc{"gated": g.handler()}))
	a.apply(fmt.Sprintf(childTemplate, "child_reported", "gated"))
	a.apply(fmt.Sprintf(parentTemplate, "parent_reported", "child_reported"))
	task := a.create("test", "parent_reported", map[string]any{"customer": "c-7"})
	g.waitStarted(t)
	call := step(a.get(task.GetId()), "call")
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, call.GetState())

	resp, err := b.client.ReportStepResult(b.ctx, &coordinatorv1.ReportStepResultRequest{Result: &executorv1.StepResult{
		TaskId: task.GetId(), StepId: call.GetId(), Attempt: call.GetAttempts(), ExecutorId: "forger",
		Outcome: &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{Results: []byte(`{"forged":true}`)}},
	}})
	require.NoError(t, err, "forwarded to a and acknowledged")
	require.False(t, resp.GetApplied())
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, step(a.get(task.GetId()), "call").GetState())

	close(g.release)
	done := a.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.NotContains(t, step(done, "call").GetResults().GetStructValue().AsMap(), "forged")
	require.Contains(t, step(done, "call").GetResults().GetStructValue().AsMap(), "charge")
}

// stepListFails fails StepList for any task but one while failing is set,
// as a database too busy to read a finished child's steps.
type stepListFails struct {
	store.Store
	keep    atomic.Value // task id whose steps still read
	failing atomic.Bool
	failed  atomic.Int32
}

func (s *stepListFails) StepList(ctx context.Context, ids ...string) ([]*store.Step, error) {
	if s.failing.Load() && (len(ids) != 1 || ids[0] != s.keep.Load()) {
		s.failed.Add(1)
		return nil, fmt.Errorf("database is locked: %w", store.ErrUnavailable)
	}
	return s.Store.StepList(ctx, ids...)
}

// twoCoordinators serves coordinators a and b on one SQLite store, a's
// reads of steps failing at will (flaky).
func twoCoordinators(t *testing.T) (flaky *stepListFails, a, b *harness) {
	t.Helper()
	st := openSQLite(t)
	flaky = &stepListFails{Store: st}
	return flaky, peerHarness(t, flaky, "coord-a"), peerHarness(t, st, "coord-b")
}

// A child's end told by another coordinator reaches the parent's owner
// (a forwarded report for the parent's step), which settles the step then
// rather than at its next recheck.
func TestChildEndToldByAnotherCoordinator(t *testing.T) {
	t.Parallel()
	flaky, a, b := twoCoordinators(t)
	a.apply(`
namespace: test
name: child_signalled
version: 1.0.0
steps:
  - name: approve
    wait_for: {signal: go}
`)
	a.apply(`
namespace: test
name: parent_told
version: 1.0.0
steps:
  - name: call
    task: test/child_signalled
`)
	task := a.create("test", "parent_told", map[string]any{})
	flaky.keep.Store(task.GetId())
	var kids []*coordinatorv1.Task
	require.Eventually(t, func() bool { kids = childrenOf(t, a, "child_signalled"); return len(kids) == 1 }, 10*time.Second, 5*time.Millisecond)
	waitWaiting(t, a, kids[0].GetId(), "approve", "signal")

	// a's own look at the finished child fails to read its steps.
	flaky.failing.Store(true)
	_, err := signal(a, kids[0].GetId(), "go", `{"ok":true}`)
	require.NoError(t, err)
	a.waitState(kids[0].GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Eventually(t, func() bool { return flaky.failed.Load() > 0 }, 10*time.Second, 5*time.Millisecond)
	flaky.failing.Store(false)
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, a.get(task.GetId()).GetState())

	// b tells a, well before a's recheck would look again.
	call := step(a.get(task.GetId()), "call")
	require.NoError(t, b.coord.NotifyParent(b.ctx, task.GetId(), call.GetId()))
	require.Eventually(t, func() bool {
		return a.get(task.GetId()).GetState() == coordinatorv1.State_STATE_COMPLETE
	}, 5*time.Second, 5*time.Millisecond, "settled on b's notice, not a's 10 s recheck")
	done := a.get(task.GetId())
	require.Equal(t, true, step(done, "call").GetResults().GetStructValue().AsMap()["approve"].(map[string]any)["ok"])
	require.False(t, b.coord.InMemory(task.GetId()), "b forwarded; it did not take the parent")
}

// The same when the child completes where the parent's owner cannot read
// it: another coordinator's notice reaches the owner, which settles the
// step that failed with the child.
func TestRetriedChildToldByAnotherCoordinator(t *testing.T) {
	t.Parallel()
	flaky, a, b := twoCoordinators(t)
	a.startExecutor(2, map[string]executor.HandlerFunc{
		"fail_once": func(_ context.Context, req *executor.Request) (any, error) {
			if req.Attempt == 1 {
				return nil, executor.Permanent(errors.New("card declined"))
			}
			return map[string]any{"charged": 42}, nil
		},
	})
	a.apply(`
namespace: test
name: child_declined
version: 1.0.0
steps:
  - name: charge
    handler: fail_once
  - name: approve
    depends_on: [charge]
    wait_for: {signal: go}
`)
	a.apply(`
namespace: test
name: parent_retold
version: 1.0.0
steps:
  - name: call
    task: test/child_declined
    retry_limit: 1
`)
	task := a.create("test", "parent_retold", map[string]any{})
	a.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	kids := childrenOf(t, a, "child_declined")
	require.Len(t, kids, 1)
	child := kids[0].GetId()

	// a's own look at the completed child fails to read its steps (the
	// child's own reads still work until it waits for its signal).
	flaky.keep.Store(child)
	flaky.failing.Store(true)
	_, err := a.client.RetryTask(a.ctx, &coordinatorv1.RetryTaskRequest{Id: child})
	require.NoError(t, err)
	waitWaiting(t, a, child, "approve", "signal")
	flaky.keep.Store(task.GetId())
	_, err = signal(a, child, "go", `{"ok":true}`)
	require.NoError(t, err)
	a.waitState(child, coordinatorv1.State_STATE_COMPLETE)
	require.Eventually(t, func() bool { return flaky.failed.Load() > 0 }, 10*time.Second, 5*time.Millisecond)
	flaky.failing.Store(false)
	require.Equal(t, coordinatorv1.State_STATE_ERROR, a.get(task.GetId()).GetState())

	call := step(a.get(task.GetId()), "call")
	require.NoError(t, b.coord.NotifyParent(b.ctx, task.GetId(), call.GetId()))
	done := a.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, step(done, "call").GetState())
	require.Equal(t, true, step(done, "call").GetResults().GetStructValue().AsMap()["approve"].(map[string]any)["ok"])
	require.False(t, b.coord.InMemory(task.GetId()), "b forwarded; it did not take the parent")
}

// childCreateHeld holds the creation of child tasks until released.
type childCreateHeld struct {
	store.Store
	entered chan struct{}
	release chan struct{}
}

func (s *childCreateHeld) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.Task, bool, error) {
	if p.Task.ParentTaskID != "" {
		select {
		case s.entered <- struct{}{}:
		default:
		}
		<-s.release
	}
	return s.Store.TaskCreate(ctx, p)
}

// A parent cancelled while its child is being created, so its cancel finds
// no child yet, still has the child cancelled once it is stored.
func TestParentCancelledWhileChildIsCreated(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	held := &childCreateHeld{Store: st, entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := serveCoordinator(t, coordinator.Config{Store: held}, nil)
	h.store = st
	g := newGate()
	h.startExecutor(2, childHandlers(map[string]executor.HandlerFunc{"gated": g.handler()}))
	h.apply(fmt.Sprintf(childTemplate, "child_late", "gated"))
	h.apply(`
namespace: test
name: parent_gone
version: 1.0.0
steps:
  - name: call
    task: test/child_late
`)
	task := h.create("test", "parent_gone", map[string]any{})
	select {
	case <-held.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the child's creation never started")
	}
	_, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId(), Reason: "changed my mind"})
	require.NoError(t, err)
	require.Empty(t, childrenOf(t, h, "child_late"), "not stored yet")
	close(held.release)

	var kids []*coordinatorv1.Task
	require.Eventually(t, func() bool { kids = childrenOf(t, h, "child_late"); return len(kids) == 1 }, 10*time.Second, 5*time.Millisecond)
	h.waitState(kids[0].GetId(), coordinatorv1.State_STATE_CANCELLED)
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, h.get(task.GetId()).GetState())
	close(g.release)
}

// A parent's cancel committed by a coordinator that stopped before it
// could cancel the child leaves the child running; the coordinator that
// takes the child over looks at its parent as it loads it and cancels it.
func TestOrphanedChildCancelledOnTakeOver(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	a := takeoverPeer(t, st, "coord-a-orphan")
	g := newGate()
	_, stopExec := a.startExecutor(2, childHandlers(map[string]executor.HandlerFunc{"gated": g.handler()}))
	a.apply(fmt.Sprintf(childTemplate, "child_orphan", "gated"))
	a.apply(fmt.Sprintf(parentTemplate, "parent_orphan", "child_orphan"))
	task := a.create("test", "parent_orphan", map[string]any{"customer": "c-9"})
	g.waitStarted(t)
	kids := childrenOf(t, a, "child_orphan")
	require.Len(t, kids, 1)
	call := step(a.get(task.GetId()), "call")
	stopExec()
	stopNow, cancel := context.WithCancel(context.Background())
	cancel()
	// Without waiting for the child's step in flight.
	if err := a.coord.Stop(stopNow); err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}

	// What a's cancel of the parent committed, before a stopped without
	// cancelling the child.
	_, err := st.TaskAdvance(context.Background(), &store.TaskAdvanceParams{
		TaskID: task.GetId(), At: time.Now(), Release: true,
		Steps: []*store.StepChange{{StepID: call.GetId(), StepName: "call", From: state.InProgress, To: state.Cancelled,
			ExpectAttempts: 1, Attempts: 1, Reason: "customer left"}},
		Task: &store.TaskChange{From: state.InProgress, To: state.Cancelled, Reason: "customer left"},
	})
	require.NoError(t, err)

	b := takeoverPeer(t, st, "coord-b-orphan")
	child := b.waitState(kids[0].GetId(), coordinatorv1.State_STATE_CANCELLED)
	// Its step was stopped with the executor (error, to be retried) or is
	// cancelled with the task; either way nothing of it runs again.
	require.Contains(t, []coordinatorv1.State{coordinatorv1.State_STATE_ERROR, coordinatorv1.State_STATE_CANCELLED}, step(child, "charge").GetState())
	last := child.GetTransitions()[len(child.GetTransitions())-1]
	require.Equal(t, "parent task "+task.GetId()+" step call no longer waits for it (step is cancelled)", last.GetReason())
}

// cancelFails refuses the cancel of one task while failing is set, as a
// store or a peer that keeps failing would; refused counts the refusals.
type cancelFails struct {
	store.Store
	taskID  atomic.Value // string
	failing atomic.Bool
	refused atomic.Int32
}

func (s *cancelFails) TaskAdvance(ctx context.Context, p *store.TaskAdvanceParams) ([]*store.Transition, error) {
	if s.failing.Load() && p.TaskID == s.taskID.Load() && p.Task != nil && p.Task.To == state.Cancelled {
		s.refused.Add(1)
		return nil, fmt.Errorf("injected: %w", store.ErrUnavailable)
	}
	return s.Store.TaskAdvance(ctx, p)
}

// A cancelled parent whose child's cancel fails every time it is tried
// leaves the child running only until the child's own look at its parent
// (every childRecheck) finds the parent's step no longer waiting and
// cancels it.
func TestChildCancelledWhenItsParentsCancelNeverLanded(t *testing.T) {
	t.Parallel()
	st := &cancelFails{Store: openSQLite(t)}
	gaveUp := make(chan struct{})
	cfg := coordinator.Config{Store: st, Logger: slog.New(&onMessage{
		Handler: testLogger(t).Handler(),
		msg:     "could not cancel a child task; it cancels itself on its next look at its parent",
		seen:    sync.OnceFunc(func() { close(gaveUp) }),
	})}
	cfg.SetChildRecheck(50 * time.Millisecond)
	h := serveCoordinator(t, cfg, nil)
	g := newGate()
	h.startExecutor(2, childHandlers(map[string]executor.HandlerFunc{"gated": g.handler()}))
	h.apply(fmt.Sprintf(childTemplate, "child_uncancelled", "gated"))
	h.apply(fmt.Sprintf(parentTemplate, "parent_uncancelled", "child_uncancelled"))
	task := h.create("test", "parent_uncancelled", map[string]any{"customer": "c-10"})
	g.waitStarted(t)
	kids := childrenOf(t, h, "child_uncancelled")
	require.Len(t, kids, 1)
	st.taskID.Store(kids[0].GetId())
	st.failing.Store(true)

	_, err := h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId(), Reason: "customer left"})
	require.NoError(t, err)
	select {
	case <-gaveUp:
	case <-time.After(20 * time.Second):
		t.Fatal("the parent's cancel never gave up on the child's")
	}
	st.failing.Store(false)
	child := h.waitState(kids[0].GetId(), coordinatorv1.State_STATE_CANCELLED)
	last := child.GetTransitions()[len(child.GetTransitions())-1]
	require.Equal(t, "parent task "+task.GetId()+" step call no longer waits for it (step is cancelled)", last.GetReason())
	require.Positive(t, st.refused.Load())
}

// onMessage is a log handler that calls seen when msg is logged.
type onMessage struct {
	slog.Handler
	msg  string
	seen func()
}

func (h *onMessage) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.seen()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *onMessage) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &onMessage{Handler: h.Handler.WithAttrs(attrs), msg: h.msg, seen: h.seen}
}

func (h *onMessage) WithGroup(name string) slog.Handler {
	return &onMessage{Handler: h.Handler.WithGroup(name), msg: h.msg, seen: h.seen}
}

// parentReadFails fails reads of one task while failing is set, as a
// store that is briefly unreachable would.
type parentReadFails struct {
	store.Store
	taskID  atomic.Value // string
	failing atomic.Bool
}

func (s *parentReadFails) TaskGet(ctx context.Context, id string) (*store.Task, error) {
	if s.failing.Load() && id == s.taskID.Load() {
		return nil, fmt.Errorf("injected: %w", store.ErrUnavailable)
	}
	return s.Store.TaskGet(ctx, id)
}

// A child retried to completion whose end notice is lost (the parent's
// owner could not read the parent then) leaves its parent's step in error;
// a retry of the parent then takes the child's results instead of running
// a second child for work already done.
func TestParentRetryTakesTheResultsOfAChildCompletedSince(t *testing.T) {
	t.Parallel()
	st := &parentReadFails{Store: openSQLite(t)}
	lost := make(chan struct{})
	h := serveCoordinator(t, coordinator.Config{Store: st, Logger: slog.New(&onMessage{
		Handler: testLogger(t).Handler(),
		msg:     "could not tell a parent task its child finished; its owner looks again within the recheck, or at a retry of the parent",
		seen:    sync.OnceFunc(func() { close(lost) }),
	})}, nil)
	h.startExecutor(2, childHandlers(map[string]executor.HandlerFunc{
		"fail_once": func(_ context.Context, req *executor.Request) (any, error) {
			if req.Attempt == 1 {
				return nil, executor.Permanent(errors.New("card declined"))
			}
			return map[string]any{"charged": 42}, nil
		},
	}))
	h.apply(fmt.Sprintf(childTemplate, "child_unheard", "fail_once"))
	h.apply(`
namespace: test
name: parent_unheard
version: 1.0.0
steps:
  - name: call
    task: test/child_unheard
    retry_limit: 1
  - name: after
    depends_on: [call]
    handler: echo
`)
	task := h.create("test", "parent_unheard", map[string]any{})
	h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	kids := childrenOf(t, h, "child_unheard")
	require.Len(t, kids, 1)
	child := kids[0].GetId()
	require.Equal(t, coordinatorv1.State_STATE_ERROR, h.get(child).GetState())

	st.taskID.Store(task.GetId())
	st.failing.Store(true)
	_, err := h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: child, Reason: "card fixed"})
	require.NoError(t, err)
	h.waitState(child, coordinatorv1.State_STATE_COMPLETE)
	select {
	case <-lost:
	case <-time.After(20 * time.Second):
		t.Fatal("the child's end notice was not lost")
	}
	st.failing.Store(false)
	require.Equal(t, coordinatorv1.State_STATE_ERROR, h.get(task.GetId()).GetState(), "nobody told the parent")

	resp, err := h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: task.GetId(), Reason: "go on"})
	require.NoError(t, err)
	require.NotEqual(t, coordinatorv1.State_STATE_ERROR, resp.GetTask().GetState())
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	call := step(done, "call")
	require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, call.GetState())
	require.EqualValues(t, 1, call.GetAttempts(), "no new attempt, no new child")
	require.Equal(t, map[string]any{"charged": float64(42)}, call.GetResults().GetStructValue().AsMap()["charge"])
	require.Len(t, childrenOf(t, h, "child_unheard"), 1, "the parent went on with the same child")
}
