package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// rerunTemplate: fetch → charge → ship, and fetch → audit beside them, so
// a rerun from charge must run charge and ship again and leave fetch and
// audit alone.
const rerunTemplate = `
namespace: test
name: rerun
version: 1.0.0
steps:
  - name: fetch
    handler: record
  - name: charge
    handler: charge
    depends_on: [fetch]
    backoff: {initial: 1ms, max: 5ms}
  - name: ship
    handler: record
    depends_on: [charge]
  - name: audit
    handler: record
    depends_on: [fetch]
`

// call is one attempt a handler saw.
type call struct {
	step    string
	attempt int
	key     string
}

// recorder keeps every attempt its handlers ran, in order per step.
type recorder struct {
	mu    sync.Mutex
	calls []call
	// failFirst makes the first attempt of every run of charge fail
	// (retryably), so each run has two attempts sharing one key.
	failFirst bool
	// permanent makes charge fail permanently while it is set.
	permanent bool
}

// record notes an attempt and returns how many the step and its key
// (its run) have had, this one included.
func (r *recorder) record(req *executor.Request) (ofStep, ofRun int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{step: req.StepName, attempt: req.Attempt, key: req.IdempotencyKey})
	for _, c := range r.calls {
		if c.step == req.StepName {
			ofStep++
			if c.key == req.IdempotencyKey {
				ofRun++
			}
		}
	}
	return ofStep, ofRun
}

func (r *recorder) of(step string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if c.step == step {
			out = append(out, c)
		}
	}
	return out
}

func (r *recorder) handlers() map[string]executor.HandlerFunc {
	return map[string]executor.HandlerFunc{
		"record": func(_ context.Context, req *executor.Request) (any, error) {
			n, _ := r.record(req)
			return map[string]int{"call": n}, nil
		},
		"charge": func(_ context.Context, req *executor.Request) (any, error) {
			n, ofRun := r.record(req)
			r.mu.Lock()
			failFirst, permanent := r.failFirst, r.permanent
			r.mu.Unlock()
			switch {
			case permanent:
				return nil, executor.Permanent(errors.New("card declined"))
			case failFirst && ofRun == 1:
				return nil, errors.New("payment API timed out")
			}
			return map[string]any{"call": n, "charged_with": req.IdempotencyKey}, nil
		},
	}
}

func rerun(h *harness, taskID, stepName, reason string) (*coordinatorv1.Task, error) {
	resp, err := h.client.RerunStep(h.ctx, &coordinatorv1.RerunStepRequest{TaskId: taskID, StepName: stepName, Reason: reason})
	return resp.GetTask(), err
}

// rerunTransitions returns the transitions of a step that a rerun wrote.
func rerunTransitions(s *coordinatorv1.Step) []*coordinatorv1.Transition {
	var out []*coordinatorv1.Transition
	for _, tr := range s.GetTransitions() {
		if strings.HasPrefix(tr.GetReason(), "rerun from ") {
			out = append(out, tr)
		}
	}
	return out
}

// protoJSON is a results value or metadata struct as JSON text.
func protoJSON(t *testing.T, m interface{ MarshalJSON() ([]byte, error) }) string {
	t.Helper()
	b, err := m.MarshalJSON()
	require.NoError(t, err)
	return string(b)
}

func TestRerunStepRunsTheStepAndItsDescendantsAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := &recorder{failFirst: true}
	h.startExecutor(4, r.handlers())
	h.apply(rerunTemplate)
	task := h.create("test", "rerun", map[string]any{"order": 1})
	before := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 2, step(before, "charge").GetAttempts())

	// Every attempt of the first run of charge carried one key.
	first := r.of("charge")
	require.Len(t, first, 2)
	require.NotEmpty(t, first[0].key)
	require.Equal(t, first[0].key, first[1].key, "a retry keeps the run's key")
	require.Equal(t, fmt.Sprintf("%s/%s/0", task.GetId(), step(before, "charge").GetId()), first[0].key)

	got, err := rerun(h, task.GetId(), "charge", "customer disputed the charge")
	require.NoError(t, err)
	require.Contains(t, []coordinatorv1.State{coordinatorv1.State_STATE_PENDING, coordinatorv1.State_STATE_IN_PROGRESS, coordinatorv1.State_STATE_COMPLETE}, got.GetState())
	after := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)

	// charge and ship ran again, fetch and audit did not.
	require.Len(t, r.of("fetch"), 1)
	require.Len(t, r.of("audit"), 1)
	require.Len(t, r.of("ship"), 2)
	second := r.of("charge")[2:]
	require.Len(t, second, 2)
	// A fresh set of attempts, numbered on from the last run's: an
	// attempt number is never used twice for one step (see
	// TestRerunIgnoresTheLastRunsLateResult).
	require.Equal(t, []int{3, 4}, []int{second[0].attempt, second[1].attempt})
	require.Equal(t, second[0].key, second[1].key, "a retry keeps the run's key")
	require.NotEqual(t, first[0].key, second[0].key, "a rerun gets a new key")
	require.Equal(t, fmt.Sprintf("%s/%s/1", task.GetId(), step(before, "charge").GetId()), second[0].key)

	// The other steps keep their results; the rerun ones have new ones.
	for _, name := range []string{"fetch", "audit"} {
		require.JSONEq(t, protoJSON(t, step(before, name).GetResults()), protoJSON(t, step(after, name).GetResults()), name)
	}
	require.JSONEq(t, `{"call":2}`, protoJSON(t, step(after, "ship").GetResults()))
	require.JSONEq(t, fmt.Sprintf(`{"call":4,"charged_with":%q}`, second[0].key), protoJSON(t, step(after, "charge").GetResults()))
	require.EqualValues(t, 4, step(after, "charge").GetAttempts())

	// The transitions say who asked and why: the task went complete →
	// pending, each rerun step complete → pending.
	var taskRerun *coordinatorv1.Transition
	for _, tr := range after.GetTransitions() {
		if tr.GetFromState() == coordinatorv1.State_STATE_COMPLETE && tr.GetToState() == coordinatorv1.State_STATE_PENDING {
			taskRerun = tr
		}
	}
	require.NotNil(t, taskRerun, "the task's move back to pending is stored")
	require.Equal(t, "rerun from charge by operator: customer disputed the charge", taskRerun.GetReason())
	for _, name := range []string{"charge", "ship"} {
		trs := rerunTransitions(step(after, name))
		require.Len(t, trs, 1, name)
		require.Equal(t, coordinatorv1.State_STATE_COMPLETE, trs[0].GetFromState(), name)
		require.Equal(t, "rerun from charge by operator: customer disputed the charge", trs[0].GetReason(), name)
		var meta map[string]string
		require.NoError(t, json.Unmarshal([]byte(protoJSON(t, trs[0].GetMetadata())), &meta), name)
		require.Equal(t, map[string]string{"rerun_from": "charge", "actor": "operator", "reason": "customer disputed the charge"}, meta, name)
	}
	for _, name := range []string{"fetch", "audit"} {
		require.Empty(t, rerunTransitions(step(after, name)), name)
	}
}

// An errored task is rerun from the step that failed it: it goes back to
// pending, the step gets fresh attempts and a new key, and the task
// completes.
func TestRerunStepOfAnErroredTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := &recorder{permanent: true}
	h.startExecutor(4, r.handlers())
	h.apply(rerunTemplate)
	task := h.create("test", "rerun", map[string]any{"order": 2})
	failed := h.waitState(task.GetId(), coordinatorv1.State_STATE_ERROR)
	require.Equal(t, coordinatorv1.State_STATE_ERROR, step(failed, "charge").GetState())
	require.Equal(t, coordinatorv1.State_STATE_PENDING, step(failed, "ship").GetState())

	r.mu.Lock()
	r.permanent = false
	r.mu.Unlock()
	_, err := rerun(h, task.GetId(), "charge", "card replaced")
	require.NoError(t, err)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 2, step(done, "charge").GetAttempts())
	require.Nil(t, step(done, "charge").GetError())
	calls := r.of("charge")
	require.Len(t, calls, 2)
	require.NotEqual(t, calls[0].key, calls[1].key)
	require.Len(t, r.of("fetch"), 1)

	var moved bool
	for _, tr := range done.GetTransitions() {
		moved = moved || tr.GetFromState() == coordinatorv1.State_STATE_ERROR && tr.GetToState() == coordinatorv1.State_STATE_PENDING &&
			tr.GetReason() == "rerun from charge by operator: card replaced"
	}
	require.True(t, moved, "the task's error → pending records the rerun")
}

func TestRerunStepRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	g := newGate()
	r := &recorder{}
	handlers := r.handlers()
	handlers["charge"] = g.handler()
	h.startExecutor(4, handlers)
	h.apply(rerunTemplate)
	task := h.create("test", "rerun", map[string]any{"order": 3})
	g.waitStarted(t) // charge is running

	code := func(err error) codes.Code { return status.Code(err) }
	for _, name := range []string{"fetch", "charge", "audit"} {
		_, err := rerun(h, task.GetId(), name, "")
		require.Equal(t, codes.FailedPrecondition, code(err), "rerun from %s while charge runs: %v", name, err)
	}
	_, err := rerun(h, task.GetId(), "chrage", "")
	require.Equal(t, codes.NotFound, code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), `"chrage"`)
	_, err = rerun(h, task.GetId(), "", "")
	require.Equal(t, codes.InvalidArgument, code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "step_name")
	_, err = rerun(h, "no-such-task", "charge", "")
	require.Equal(t, codes.NotFound, code(err), "%v", err)

	// Nothing was changed by the refusals.
	close(g.release)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	for _, s := range done.GetSteps() {
		require.Empty(t, rerunTransitions(s), s.GetName())
		require.EqualValues(t, 1, s.GetAttempts(), s.GetName())
	}

	// A cancelled task is not rerun.
	cancelled := h.create("test", "rerun", map[string]any{"order": 4})
	_, err = h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: cancelled.GetId()})
	require.NoError(t, err)
	_, err = rerun(h, cancelled.GetId(), "fetch", "")
	require.Equal(t, codes.FailedPrecondition, code(err), "%v", err)
}

// A task finished before a restart is rerun by the restarted coordinator
// (which loads it from the store), and the generation it stored survives
// the next restart: the key of the rerun run is the one after it.
func TestRerunStepAfterRestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	r := &recorder{}
	runExecutor(h, executor.Config{Capacity: 4}, listen(t), r.handlers())
	h.apply(rerunTemplate)
	task := h.create("test", "rerun", map[string]any{"order": 5})
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)

	n.crash()
	n.start()
	_, err := rerun(h, task.GetId(), "charge", "after restart")
	require.NoError(t, err)
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	n.crash()
	n.start()
	_, err = rerun(h, task.GetId(), "ship", "again")
	require.NoError(t, err)
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)

	charge := r.of("charge")
	require.Len(t, charge, 2)
	require.Regexp(t, `/0$`, charge[0].key)
	require.Regexp(t, `/1$`, charge[1].key)
	ship := r.of("ship")
	require.Len(t, ship, 3)
	require.Regexp(t, `/0$`, ship[0].key)
	require.Regexp(t, `/1$`, ship[1].key)
	require.Regexp(t, `/2$`, ship[2].key)
	require.Len(t, r.of("fetch"), 1)
}

// A rerun sent to a coordinator that does not own the task is forwarded to
// the owner, which applies it once.
func TestRerunStepOnAnyCoordinator(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		st := openSQLite(t)
		testRerunAnywhere(t, peerHarness(t, st, "coord-a"), peerHarness(t, st, "coord-b"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		schema := newPostgresSchema(t)
		testRerunAnywhere(t, peerHarness(t, openPostgres(t, schema), "coord-a"), peerHarness(t, openPostgres(t, schema), "coord-b"))
	})
}

func testRerunAnywhere(t *testing.T, a, b *harness) {
	r := &recorder{}
	runExecutor(a, executor.Config{Capacity: 4}, listen(t), r.handlers())
	a.apply(rerunTemplate)
	task := a.create("test", "rerun", map[string]any{"order": 6})
	a.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)

	_, err := rerun(b, task.GetId(), "charge", "via b")
	require.NoError(t, err)
	done := a.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Len(t, r.of("charge"), 2)
	require.Len(t, r.of("ship"), 2)
	require.Len(t, r.of("fetch"), 1)
	require.Len(t, rerunTransitions(step(done, "charge")), 1)

	// Refusals come back from the owner as they are.
	_, err = rerun(b, task.GetId(), "nope", "")
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), `"nope"`)
}

// Executors resend recent results after a broken stream, so a copy of the
// last run's result may arrive after a rerun. It names the last run's
// attempt, which is not the one in flight, and changes nothing: the new
// run completes with its own result.
func TestRerunIgnoresTheLastRunsLateResult(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-rerun", 1, "work")
	f.register(h)
	h.apply(`
namespace: test
name: rerun_late
version: 1.0.0
steps:
  - name: work
    handler: work
`)
	result := func(st *executorv1.ExecuteStep, results string) *executorv1.ExecuteResponse {
		msg := succeed(st, "exec-rerun")
		msg.GetStepResult().GetSuccess().Results = []byte(results)
		return msg
	}
	task := h.create("test", "rerun_late", map[string]any{})
	first := f.next()
	f.send(result(first, `{"run":0}`))
	h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)

	_, err := rerun(h, task.GetId(), "work", "")
	require.NoError(t, err)
	second := f.next()
	require.Equal(t, first.GetStepId(), second.GetStepId())
	require.EqualValues(t, 2, second.GetAttempt())
	require.NotEqual(t, first.GetIdempotencyKey(), second.GetIdempotencyKey())

	f.send(result(first, `{"run":0,"late":true}`)) // the resent copy
	f.send(result(second, `{"run":1}`))
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.JSONEq(t, `{"run":1}`, protoJSON(t, step(done, "work").GetResults()))
	completions := 0
	for _, tr := range step(done, "work").GetTransitions() {
		if tr.GetToState() == coordinatorv1.State_STATE_COMPLETE {
			completions++
		}
	}
	require.Equal(t, 2, completions, "one completion per run")
}

// On a secured coordinator a rerun records the token that asked, needs
// write access and a grant of the task's namespace.
func TestRerunStepRecordsTheCaller(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	all, writerA, writerB, readerA := s.client("all-token-0123456789"), s.client("writer-a-token-0123456789"),
		s.client("writer-b-token-0123456789"), s.client("reader-a-token-0123456789")
	require.NoError(t, s.register(all, "a"))
	id, _ := s.startExecutor(s.mesh.Issue(t, "executor"))
	require.Eventually(t, func() bool { return slices.Equal(s.connected(all), []string{id}) }, 10*time.Second, 20*time.Millisecond)
	task, err := s.create(writerA, "a")
	require.NoError(t, err)
	waitComplete := func() *coordinatorv1.Task {
		var last *coordinatorv1.Task
		require.Eventually(t, func() bool {
			resp, err := all.GetTask(s.ctx, &coordinatorv1.GetTaskRequest{Id: task.GetId()})
			require.NoError(t, err)
			last = resp.GetTask()
			return last.GetState() == coordinatorv1.State_STATE_COMPLETE
		}, 20*time.Second, 20*time.Millisecond)
		return last
	}
	waitComplete()

	req := &coordinatorv1.RerunStepRequest{TaskId: task.GetId(), StepName: "second", Reason: "bad output"}
	_, err = readerA.RerunStep(s.ctx, req)
	requireCode(t, err, codes.PermissionDenied, `token "reader-a" has read access; RerunStep needs write access`)
	_, err = writerB.RerunStep(s.ctx, req)
	requireCode(t, err, codes.PermissionDenied, `not granted namespace "a"`)
	_, err = writerA.RerunStep(s.ctx, req)
	require.NoError(t, err)
	done := waitComplete()
	trs := rerunTransitions(step(done, "second"))
	require.Len(t, trs, 1)
	require.Equal(t, "rerun from second by writer-a: bad output", trs[0].GetReason())
	require.Empty(t, rerunTransitions(step(done, "first")))
}
