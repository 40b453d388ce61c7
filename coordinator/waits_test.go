package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/tasker-go/tasker/store"
)

// approvalTemplate: a handler step, then a wait for a signal, then a
// sleep. The wait has no timeout unless %s adds one.
const approvalTemplate = `
namespace: test
name: %s
version: 1.0.0
steps:
  - name: prepare
    handler: gated
  - name: approve
    depends_on: [prepare]
    wait_for: {signal: approved%s}
    retry_limit: 2
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
  - name: cool_down
    depends_on: [approve]
    sleep: 150ms
`

func signal(h *harness, id, name, payload string) (*coordinatorv1.SignalTaskResponse, error) {
	return h.client.SignalTask(h.ctx, &coordinatorv1.SignalTaskRequest{Id: id, Signal: name, Payload: payload})
}

// waitWaiting polls until the named step waits in a wait (in_progress)
// with the given reason. Both are checked: the reason comes from the
// coordinator's memory, the state from the store, which a read may see
// just before the commit that started the wait.
func waitWaiting(t *testing.T, h *harness, id, name, reason string) *coordinatorv1.Step {
	t.Helper()
	var st *coordinatorv1.Step
	require.Eventually(t, func() bool {
		resp, err := h.client.GetTask(h.ctx, &coordinatorv1.GetTaskRequest{Id: id})
		if err != nil {
			return false // restarting
		}
		st = step(resp.GetTask(), name)
		return st.GetWaiting().GetReason() == reason && st.GetState() == coordinatorv1.State_STATE_IN_PROGRESS
	}, 20*time.Second, 5*time.Millisecond, "step %s never waited for %s", name, reason)
	return st
}

func storedSignals(t *testing.T, st store.Store, id string) []*store.Signal {
	t.Helper()
	sigs, err := st.SignalList(context.Background(), &store.SignalListParams{TaskID: id})
	require.NoError(t, err)
	return sigs
}

// A signal sent to a step waiting for it completes the step with the
// payload as its result; the step held no executor slot meanwhile; the
// sleep after it completes no earlier than its time.
func TestSignalCompletesWaitingStep(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	close(g.release)
	h.startExecutor(1, map[string]executor.HandlerFunc{"gated": g.handler()})
	h.apply(fmt.Sprintf(approvalTemplate, "approval", ""))
	task := h.create("test", "approval", map[string]any{})

	approve := waitWaiting(t, h, task.GetId(), "approve", "signal")
	require.Equal(t, "approved", approve.GetWaiting().GetKey())
	require.Nil(t, approve.GetWaiting().GetUntil(), "no timeout, no end")
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, approve.GetState())

	resp, err := signal(h, task.GetId(), "approved", `{"by":"ana"}`)
	require.NoError(t, err)
	require.Equal(t, "approve", resp.GetConsumedBy())
	cool := waitWaiting(t, h, task.GetId(), "cool_down", "sleep")
	require.NotNil(t, cool.GetWaiting().GetUntil())

	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	raw, err := json.Marshal(step(done, "approve").GetResults().AsInterface())
	require.NoError(t, err)
	require.JSONEq(t, `{"by":"ana"}`, string(raw))
	require.EqualValues(t, 1, step(done, "approve").GetAttempts())

	var slept, woke time.Time
	for _, tr := range step(done, "cool_down").GetTransitions() {
		switch tr.GetToState() {
		case coordinatorv1.State_STATE_IN_PROGRESS:
			slept = tr.GetAt().AsTime()
		case coordinatorv1.State_STATE_COMPLETE:
			woke = tr.GetAt().AsTime()
		}
	}
	require.GreaterOrEqual(t, woke.Sub(slept), 150*time.Millisecond, "the sleep ended early")

	sigs := storedSignals(t, h.store, task.GetId())
	require.Len(t, sigs, 1)
	require.Equal(t, step(done, "approve").GetId(), sigs[0].ConsumedStepID)
	require.Equal(t, 1, sigs[0].ConsumedAttempt)

	// The task is finished: another signal is refused and stores nothing.
	_, err = signal(h, task.GetId(), "approved", `{}`)
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, err.Error(), "complete")
	require.Len(t, storedSignals(t, h.store, task.GetId()), 1)
}

// A signal sent before its step is reached is kept, and consumed by the
// step when it is; a second one for that step is refused, not queued.
func TestSignalBeforeStepIsKeptAndConsumedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	h.startExecutor(1, map[string]executor.HandlerFunc{"gated": g.handler()})
	h.apply(fmt.Sprintf(approvalTemplate, "early", ""))
	task := h.create("test", "early", map[string]any{})
	g.waitStarted(t)

	resp, err := signal(h, task.GetId(), "approved", `"early bird"`)
	require.NoError(t, err)
	require.Empty(t, resp.GetConsumedBy(), "kept: the step does not wait yet")
	require.Equal(t, "parents", step(resp.GetTask(), "approve").GetWaiting().GetReason())

	_, err = signal(h, task.GetId(), "approved", `"again"`)
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "one kept already for the one step")
	require.Contains(t, err.Error(), "keeps 1 already")
	sigs := storedSignals(t, h.store, task.GetId())
	require.Len(t, sigs, 1)
	require.False(t, sigs[0].Consumed())

	close(g.release)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, "early bird", step(done, "approve").GetResults().AsInterface(), "any JSON payload is the result")
	sigs = storedSignals(t, h.store, task.GetId())
	require.Len(t, sigs, 1)
	require.Equal(t, step(done, "approve").GetId(), sigs[0].ConsumedStepID)
}

// A wait that gets no signal within its timeout fails under the step's
// retry policy; the retry waits again; with no attempt left the task
// fails, and a signal to it then is refused.
func TestSignalWaitTimesOutAndRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	close(g.release)
	h.startExecutor(1, map[string]executor.HandlerFunc{"gated": g.handler()})
	h.apply(fmt.Sprintf(approvalTemplate, "impatient", ", timeout: 30ms"))
	task := h.create("test", "impatient", map[string]any{})

	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	approve := step(failed, "approve")
	require.EqualValues(t, 2, approve.GetAttempts())
	require.Equal(t, "Timeout", approve.GetError().GetErrorClass())
	require.Contains(t, approve.GetError().GetMessage(), "no signal approved within 30ms")
	waits := 0
	for _, tr := range approve.GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_IN_PROGRESS {
			waits++
			require.Equal(t, "signal", tr.GetMetadata().AsMap()["wait"])
		}
	}
	require.Equal(t, 2, waits, "each attempt waited")

	_, err := signal(h, task.GetId(), "approved", `{}`)
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, err.Error(), "is error")
	require.Empty(t, storedSignals(t, h.store, task.GetId()))

	// Retried, the step waits again, and a signal now completes it.
	_, err = h.client.RetryTask(h.ctx, &coordinatorv1.RetryTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := signal(h, task.GetId(), "approved", `{"late":true}`)
		return err == nil && resp.GetConsumedBy() == "approve"
	}, 10*time.Second, time.Millisecond, "the retried wait never took the signal")
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 3, step(done, "approve").GetAttempts())
	require.Len(t, storedSignals(t, h.store, task.GetId()), 1)
}

// Bad signals are refused with a message naming what is wrong, and
// change nothing.
func TestSignalBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	h.startExecutor(1, map[string]executor.HandlerFunc{"gated": g.handler()})
	h.apply(fmt.Sprintf(approvalTemplate, "strict", ""))
	task := h.create("test", "strict", map[string]any{})
	g.waitStarted(t)
	before := h.get(task.GetId())

	for _, c := range []struct {
		id, name, payload string
		code              codes.Code
		says              string
	}{
		{task.GetId(), "approved", `{"a":`, codes.InvalidArgument, "payload"},
		{task.GetId(), "", `{}`, codes.InvalidArgument, "signal"},
		{task.GetId(), "has space", `{}`, codes.InvalidArgument, "signal"},
		{task.GetId(), "rejected", `{}`, codes.NotFound, "waits for approved"},
		{"no-such-task", "approved", `{}`, codes.NotFound, "no-such-task"},
		{"", "approved", `{}`, codes.InvalidArgument, "id"},
	} {
		_, err := signal(h, c.id, c.name, c.payload)
		require.Equal(t, c.code, status.Code(err), "%+v: %v", c, err)
		require.Contains(t, err.Error(), c.says)
	}
	require.Empty(t, storedSignals(t, h.store, task.GetId()))
	after := h.get(task.GetId())
	require.Equal(t, len(before.GetSteps()[0].GetTransitions()), len(after.GetSteps()[0].GetTransitions()))
	require.Equal(t, stepSummary(before), stepSummary(after))
	close(g.release)
}

// A wait and a sleep survive a restart of the coordinator (its SQLite
// file reopened): the signal kept before the restart, and the signal sent
// after it, still complete their steps; the sleep still ends.
func TestWaitsSurviveRestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	h.apply(`
namespace: test
name: restart_waits
version: 1.0.0
steps:
  - name: approve
    wait_for: {signal: approved}
  - name: nap
    sleep: 300ms
  - name: second
    depends_on: [approve]
    wait_for: {signal: second}
`)
	created, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "restart_waits"})
	require.NoError(t, err)
	require.Empty(t, created.GetWarnings(), "waits need no executor")
	task := created.GetTask()
	execs, err := h.client.ListExecutors(h.ctx, &coordinatorv1.ListExecutorsRequest{})
	require.NoError(t, err)
	require.Empty(t, execs.GetUnhosted(), "waits name no handler")
	waitWaiting(t, h, task.GetId(), "approve", "signal")
	waitWaiting(t, h, task.GetId(), "nap", "sleep")
	_, err = signal(h, task.GetId(), "second", `{"n":2}`)
	require.NoError(t, err, "kept for a step not reached")

	n.crash()
	n.start()
	waitWaiting(t, h, task.GetId(), "approve", "signal")
	var resp *coordinatorv1.SignalTaskResponse
	require.Eventually(t, func() bool {
		resp, err = signal(h, task.GetId(), "approved", `{"n":1}`)
		return status.Code(err) != codes.Unavailable
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, "approve", resp.GetConsumedBy())

	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 2, step(done, "second").GetResults().GetStructValue().AsMap()["n"])
	require.EqualValues(t, 1, step(done, "nap").GetAttempts(), "the sleep was not restarted")
	sigs := storedSignals(t, n.store, task.GetId())
	require.Len(t, sigs, 2)
	for _, s := range sigs {
		require.True(t, s.Consumed(), s.Name)
	}
}

// A signal sent to a coordinator that does not own the task is forwarded
// to its owner, on one SQLite file and, when set up, on PostgreSQL.
func TestSignalOnAnotherCoordinator(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	testSignalOnAnotherCoordinator(t, st, peerHarness(t, st, "coord-a"), peerHarness(t, st, "coord-b"))
}

func TestSignalOnAnotherCoordinatorPostgres(t *testing.T) {
	t.Parallel()
	schema := newPostgresSchema(t)
	stA := openPostgres(t, schema)
	testSignalOnAnotherCoordinator(t, stA, peerHarness(t, stA, "coord-a"), peerHarness(t, openPostgres(t, schema), "coord-b"))
}

func testSignalOnAnotherCoordinator(t *testing.T, st store.Store, a, b *harness) {
	a.apply(`
namespace: test
name: remote_signal
version: 1.0.0
steps:
  - name: approve
    wait_for: {signal: approved}
`)
	task := a.create("test", "remote_signal", map[string]any{})
	waitWaiting(t, a, task.GetId(), "approve", "signal")
	resp, err := signal(b, task.GetId(), "approved", `{"via":"b"}`)
	require.NoError(t, err)
	require.Equal(t, "approve", resp.GetConsumedBy())
	done := a.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, "b", step(done, "approve").GetResults().GetStructValue().AsMap()["via"])
	for _, tr := range step(done, "approve").GetTransitions() {
		require.Equal(t, step(done, "approve").GetTransitions()[0].GetLeaseToken(), tr.GetLeaseToken(), "a, the owner, wrote every transition")
	}
	require.Len(t, storedSignals(t, st, task.GetId()), 1)
}

// A coordinator that stops while a step sleeps and another waits for a
// signal leaves both to the coordinator that takes its tasks over, which
// rebuilds the sleep's timer from the store and takes the signal.
func TestWaitsSurviveTakeOver(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	a := takeoverPeer(t, st, "coord-a")
	a.apply(`
namespace: test
name: takeover_waits
version: 1.0.0
steps:
  - name: approve
    wait_for: {signal: approved}
  - name: nap
    sleep: 200ms
`)
	task := a.create("test", "takeover_waits", map[string]any{})
	waitWaiting(t, a, task.GetId(), "nap", "sleep")
	waitWaiting(t, a, task.GetId(), "approve", "signal")
	stopNow, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, a.coord.Stop(stopNow))

	b := takeoverPeer(t, st, "coord-b")
	var resp *coordinatorv1.SignalTaskResponse
	require.Eventually(t, func() bool {
		var err error
		resp, err = signal(b, task.GetId(), "approved", `{"on":"b"}`)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, "approve", resp.GetConsumedBy())
	done := b.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 1, step(done, "nap").GetAttempts(), "the sleep went on, not again")
	first := step(done, "nap").GetTransitions()
	require.NotEqual(t, first[0].GetLeaseToken(), first[len(first)-1].GetLeaseToken(), "b, not a, ended the sleep")
}

// A wait is a task's first step like any other under the task's
// concurrency key: a task refused a place at creation starts its wait
// only once admitted, and a signal kept while it was pending is consumed
// then.
func TestWaitUnderConcurrencyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(`
namespace: test
name: keyed_wait
version: 1.0.0
concurrency:
  - key: context.customer
    max_running: 1
steps:
  - name: approve
    wait_for: {signal: go}
`)
	first := h.create("test", "keyed_wait", map[string]any{"customer": "c1", "n": 1})
	second := h.create("test", "keyed_wait", map[string]any{"customer": "c1", "n": 2})
	waitWaiting(t, h, first.GetId(), "approve", "signal")
	require.Equal(t, coordinatorv1.State_STATE_PENDING, second.GetState())
	require.Equal(t, "concurrency", step(h.get(second.GetId()), "approve").GetWaiting().GetReason())

	resp, err := signal(h, second.GetId(), "go", `2`)
	require.NoError(t, err)
	require.Empty(t, resp.GetConsumedBy(), "kept while its task waits for a place")
	resp, err = signal(h, first.GetId(), "go", `1`)
	require.NoError(t, err)
	require.Equal(t, "approve", resp.GetConsumedBy())

	done := h.waitState(second.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 2, step(done, "approve").GetResults().GetNumberValue())
	require.EqualValues(t, 1, step(done, "approve").GetAttempts())
	h.waitState(first.GetId(), coordinatorv1.State_STATE_COMPLETE)
}

// signalsFailOnce fails the first SignalList, as a database that is busy
// just as a coordinator takes a task over.
type signalsFailOnce struct {
	store.Store
	failed atomic.Bool
}

func (s *signalsFailOnce) SignalList(ctx context.Context, p *store.SignalListParams) ([]*store.Signal, error) {
	if s.failed.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("database is locked: %w", store.ErrUnavailable)
	}
	return s.Store.SignalList(ctx, p)
}

// A coordinator that takes a task over and cannot read its kept signals
// does not let a wait pass them by: the wait holds until a later wake
// reads them, then consumes the kept one; a sleep meanwhile goes on.
func TestKeptSignalSurvivesAFailedRead(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	a := takeoverPeer(t, st, "coord-a")
	a.apply(`
namespace: test
name: failed_read
version: 1.0.0
steps:
  - name: nap
    sleep: 300ms
  - name: approve
    depends_on: [nap]
    wait_for: {signal: approved}
`)
	task := a.create("test", "failed_read", map[string]any{})
	resp, err := signal(a, task.GetId(), "approved", `"kept"`)
	require.NoError(t, err)
	require.Empty(t, resp.GetConsumedBy())
	stopNow, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, a.coord.Stop(stopNow))

	flaky := &signalsFailOnce{Store: st}
	b := takeoverPeer(t, flaky, "coord-b")
	done := b.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.True(t, flaky.failed.Load(), "b's first read of the signals failed")
	require.Equal(t, "kept", step(done, "approve").GetResults().GetStringValue())
	sigs := storedSignals(t, st, task.GetId())
	require.Len(t, sigs, 1)
	require.Equal(t, step(done, "approve").GetId(), sigs[0].ConsumedStepID)
}

// A wait runs on no executor, so a result reported for it, through the API
// as any executor could, is ignored: only its signal ends it.
func TestResultReportedForAWaitIsIgnored(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	close(g.release)
	h.startExecutor(1, map[string]executor.HandlerFunc{"gated": g.handler()})
	h.apply(fmt.Sprintf(approvalTemplate, "approval-forged", ""))
	task := h.create("test", "approval-forged", map[string]any{})
	approve := waitWaiting(t, h, task.GetId(), "approve", "signal")

	_, err := h.client.ReportStepResult(h.ctx, &coordinatorv1.ReportStepResultRequest{Result: &executorv1.StepResult{
		TaskId: task.GetId(), StepId: approve.GetId(), Attempt: approve.GetAttempts(), ExecutorId: "forger",
		Outcome: &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{Results: []byte(`{"forged":true}`)}},
	}})
	require.NoError(t, err, "a result nobody waits for is accepted and dropped, as for any stale attempt")
	got := waitWaiting(t, h, task.GetId(), "approve", "signal")
	require.Equal(t, coordinatorv1.State_STATE_IN_PROGRESS, got.GetState())

	_, err = signal(h, task.GetId(), "approved", `{"by":"ana"}`)
	require.NoError(t, err)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	raw, err := json.Marshal(step(done, "approve").GetResults().AsInterface())
	require.NoError(t, err)
	require.JSONEq(t, `{"by":"ana"}`, string(raw))
}

// until waits for the time its expression gives, from a parent's result
// or the context, across a restart; a time already past completes the
// step at once; a value that is not a time fails it for good.
func TestUntilWaitsForTheTimeItsExpressionGives(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	h.apply(`
namespace: test
name: until
version: 1.0.0
steps:
  - name: at
    until: context.at
  - name: past
    until: context.past
  - name: epoch
    until: context.epoch
`)
	at := time.Now().Add(700 * time.Millisecond).UTC()
	ctx := map[string]any{"at": at.Format(time.RFC3339Nano), "past": "2001-02-03T04:05:06Z", "epoch": float64(at.Unix() + 1)}
	task := h.create("test", "until", ctx)
	w := waitWaiting(t, h, task.GetId(), "at", "sleep")
	require.Equal(t, at.Format(time.RFC3339Nano), w.GetWaiting().GetUntil().AsTime().UTC().Format(time.RFC3339Nano))

	n.crash()
	n.start()
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	ends := map[string]time.Time{}
	for _, s := range done.GetSteps() {
		trs := s.GetTransitions()
		ends[s.GetName()] = trs[len(trs)-1].GetAt().AsTime()
	}
	require.False(t, ends["at"].Before(at), "at ended at %s, before %s", ends["at"], at)
	require.False(t, ends["epoch"].Before(time.Unix(at.Unix()+1, 0)))
	require.True(t, ends["past"].Before(at), "a time past ends the wait at once")

	h.apply(`
namespace: test
name: until_bad
version: 1.0.0
steps:
  - name: at
    until: context.at
`)
	bad := h.create("test", "until_bad", map[string]any{"at": "tomorrow"})
	failed := h.waitState(bad.GetId(), coordinatorv1.State_STATE_ERROR)
	require.Equal(t, "InvalidUntil", step(failed, "at").GetError().GetErrorClass())
	require.Contains(t, step(failed, "at").GetError().GetMessage(), `"tomorrow" is not an RFC 3339 time`)
	require.False(t, step(failed, "at").GetError().GetRetryable())
}
