package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
	"github.com/tasker-go/tasker/store"
)

const debouncedTemplate = `
namespace: test
name: debounced
version: 1.0.0
steps:
  - name: run
    handler: record
`

// runs records the context each task ran with, by task id.
type runs struct {
	mu   sync.Mutex // protects byID
	byID map[string][]string
}

func newRuns() *runs { return &runs{byID: map[string][]string{}} }

func (r *runs) handler() executor.HandlerFunc {
	return func(_ context.Context, req *executor.Request) (any, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.byID[req.TaskID] = append(r.byID[req.TaskID], string(req.Context))
		return map[string]bool{"ok": true}, nil
	}
}

func (r *runs) of(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.byID[id]...)
}

// debounce creates a debounced test/debounced task with context {"n": n}
// on client c.
func debounce(ctx context.Context, c coordinatorv1.CoordinatorServiceClient, key string, n int, delay time.Duration) (*coordinatorv1.CreateTaskResponse, error) {
	s, err := structpb.NewStruct(map[string]any{"n": n})
	if err != nil {
		return nil, err
	}
	return c.CreateTask(ctx, &coordinatorv1.CreateTaskRequest{
		Namespace: "test", Name: "debounced", Context: s,
		Debounce: &coordinatorv1.Debounce{Key: key, Delay: durationpb.New(delay)},
	})
}

func contextN(t *testing.T, task *coordinatorv1.Task) int {
	t.Helper()
	return int(task.GetContext().GetFields()["n"].GetNumberValue())
}

// lastFolded is the create a burst's task ended with: each fold moves the
// start time to its own time plus the delay, under the task's lock, so the
// answer with the latest run_at is the last fold committed, and its context
// is the one the task keeps.
func lastFolded(t *testing.T, resps []*coordinatorv1.CreateTaskResponse) *coordinatorv1.Task {
	t.Helper()
	var last *coordinatorv1.Task
	for _, r := range resps {
		if last == nil || r.GetTask().GetRunAt().AsTime().After(last.GetRunAt().AsTime()) {
			last = r.GetTask()
		}
	}
	return last
}

// burst sends n debounced creates with one key at once, spread over the
// clients, and checks they made one task: every answer names it, exactly
// one created it, and it keeps the context of the last fold.
func burst(t *testing.T, ctx context.Context, clients []coordinatorv1.CoordinatorServiceClient, key string, n int) *coordinatorv1.Task {
	t.Helper()
	resps := make([]*coordinatorv1.CreateTaskResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { resps[i], errs[i] = debounce(ctx, clients[i%len(clients)], key, i+1, time.Hour) })
	}
	wg.Wait()
	created := 0
	for i := range n {
		require.NoError(t, errs[i], "create %d", i+1)
		require.Equal(t, resps[0].GetTask().GetId(), resps[i].GetTask().GetId(), "create %d", i+1)
		require.Equal(t, key, resps[i].GetTask().GetDebounceKey())
		if resps[i].GetCreated() {
			created++
		}
	}
	require.Equal(t, 1, created, "one create made the task, the others folded into it")
	last := lastFolded(t, resps)
	for _, c := range clients {
		got, err := c.GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: last.GetId()})
		require.NoError(t, err)
		require.Equal(t, contextN(t, last), contextN(t, got.GetTask()), "the task keeps the last fold's context")
		require.Equal(t, last.GetRunAt().AsTime(), got.GetTask().GetRunAt().AsTime())
		require.Equal(t, coordinatorv1.State_STATE_PENDING, got.GetTask().GetState())
	}
	return last
}

// A burst of debounced creates makes one task; creates one after another
// fold into it, each replacing its context and moving its start; it runs
// once, with the last context, delay after the last create; once it has
// started, the next create makes a new task.
func TestDebouncedCreatesFoldIntoOneTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := newRuns()
	h.startExecutor(4, map[string]executor.HandlerFunc{"record": r.handler()})
	h.apply(debouncedTemplate)

	task := burst(t, h.ctx, []coordinatorv1.CoordinatorServiceClient{h.client}, "burst", 16)
	got := h.get(task.GetId())
	require.Equal(t, "scheduled", step(got, "run").GetWaiting().GetReason())
	require.Equal(t, got.GetRunAt().AsTime(), step(got, "run").GetWaiting().GetUntil().AsTime())
	require.Empty(t, got.GetIdempotencyKey(), "a debounced task has no identity: its key finds it")

	// One after another: each create replaces the context and moves the
	// start to delay after itself.
	var first *coordinatorv1.Task
	for n := 1; n <= 5; n++ {
		before := time.Now()
		resp, err := debounce(h.ctx, h.client, "serial", n, time.Hour)
		require.NoError(t, err)
		require.Equal(t, n == 1, resp.GetCreated())
		if first == nil {
			first = resp.GetTask()
		}
		require.Equal(t, first.GetId(), resp.GetTask().GetId())
		require.Equal(t, n, contextN(t, resp.GetTask()))
		require.False(t, resp.GetTask().GetRunAt().AsTime().Before(before.Add(time.Hour)), "start moved to an hour after create %d", n)
	}
	require.Equal(t, 5, contextN(t, h.get(first.GetId())))
	require.Empty(t, r.of(first.GetId()), "nothing ran before its start")

	// The last create's own delay counts: a short one starts it soon.
	resp, err := debounce(h.ctx, h.client, "serial", 6, 50*time.Millisecond)
	require.NoError(t, err)
	require.False(t, resp.GetCreated())
	require.Equal(t, first.GetId(), resp.GetTask().GetId())
	h.waitState(first.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, []string{`{"n":6}`}, r.of(first.GetId()), "it ran once, with the last context")

	// It started: the next create with the key is a new task.
	next, err := debounce(h.ctx, h.client, "serial", 7, time.Hour)
	require.NoError(t, err)
	require.True(t, next.GetCreated())
	require.NotEqual(t, first.GetId(), next.GetTask().GetId())
	require.Equal(t, 7, contextN(t, next.GetTask()))
	// Other keys and the burst's task are untouched.
	require.Equal(t, contextN(t, task), contextN(t, h.get(task.GetId())))
	require.Empty(t, r.of(task.GetId()))

	// A cancelled task takes no more creates: the next one is a new task.
	_, err = h.client.CancelTask(h.ctx, &coordinatorv1.CancelTaskRequest{Id: task.GetId()})
	require.NoError(t, err)
	after, err := debounce(h.ctx, h.client, "burst", 99, time.Hour)
	require.NoError(t, err)
	require.True(t, after.GetCreated())
	require.NotEqual(t, task.GetId(), after.GetTask().GetId())
	require.Equal(t, coordinatorv1.State_STATE_CANCELLED, h.get(task.GetId()).GetState())
}

// A task whose start time passed but which has not been dispatched yet (no
// executor hosts its handler) has started as far as debouncing goes: a
// create makes a new task rather than change a task that is due.
func TestDebouncedTaskDueWithoutExecutorIsNotChanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(debouncedTemplate)
	resp, err := debounce(h.ctx, h.client, "k", 1, 20*time.Millisecond)
	require.NoError(t, err)
	due := resp.GetTask()
	require.Eventually(t, func() bool {
		return step(h.get(due.GetId()), "run").GetWaiting().GetReason() == "no_executor"
	}, 10*time.Second, 5*time.Millisecond)
	next, err := debounce(h.ctx, h.client, "k", 2, time.Hour)
	require.NoError(t, err)
	require.True(t, next.GetCreated())
	require.NotEqual(t, due.GetId(), next.GetTask().GetId())
	require.Equal(t, 1, contextN(t, h.get(due.GetId())))
}

// Debounce with a run_at, a delay or an idempotency key, and a debounce
// without a key or with a delay out of range, are refused naming the
// field, and nothing is stored.
func TestDebouncedCreateValidation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(debouncedTemplate)
	ok := &coordinatorv1.Debounce{Key: "k", Delay: durationpb.New(time.Second)}
	req := func(edit func(*coordinatorv1.CreateTaskRequest)) *coordinatorv1.CreateTaskRequest {
		r := &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "debounced", Debounce: ok}
		edit(r)
		return r
	}
	for _, tc := range []struct {
		req  *coordinatorv1.CreateTaskRequest
		want string
	}{
		{req(func(r *coordinatorv1.CreateTaskRequest) { r.RunAt = timestamppb.Now() }), "debounce and run_at"},
		{req(func(r *coordinatorv1.CreateTaskRequest) { r.Delay = durationpb.New(time.Second) }), "debounce and delay"},
		{req(func(r *coordinatorv1.CreateTaskRequest) { r.IdempotencyKey = "x" }), "debounce and idempotency_key"},
		{req(func(r *coordinatorv1.CreateTaskRequest) { r.Debounce = &coordinatorv1.Debounce{Delay: ok.Delay} }), "debounce.key is required"},
		{req(func(r *coordinatorv1.CreateTaskRequest) {
			r.Debounce = &coordinatorv1.Debounce{Key: strings.Repeat("k", 257), Delay: ok.Delay}
		}), "debounce.key is 257 bytes"},
		{req(func(r *coordinatorv1.CreateTaskRequest) { r.Debounce = &coordinatorv1.Debounce{Key: "k"} }), "debounce.delay is required"},
		{req(func(r *coordinatorv1.CreateTaskRequest) {
			r.Debounce = &coordinatorv1.Debounce{Key: "k", Delay: durationpb.New(0)}
		}), "debounce.delay: 0s must be more than zero"},
		{req(func(r *coordinatorv1.CreateTaskRequest) {
			r.Debounce = &coordinatorv1.Debounce{Key: "k", Delay: durationpb.New(-time.Second)}
		}), "debounce.delay: -1s must be more than zero"},
		{req(func(r *coordinatorv1.CreateTaskRequest) {
			r.Debounce = &coordinatorv1.Debounce{Key: "k", Delay: durationpb.New(25 * time.Hour)}
		}), "debounce.delay: 25h0m0s is over the maximum of 24h0m0s"},
	} {
		_, err := h.client.CreateTask(h.ctx, tc.req)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), tc.want)
	}
	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetTasks(), "nothing stored on bad input")

	// A later create's context must meet the schema of the version the
	// task is pinned to.
	h.apply(`
namespace: test
name: debounced
version: 1.0.0
steps:
  - name: run
    handler: record
`)
	_, err = debounce(h.ctx, h.client, "k", 1, time.Hour)
	require.NoError(t, err)
	h.apply(`
namespace: test
name: debounced
version: 2.0.0
context_schema:
  type: object
  properties:
    n: {type: string}
steps:
  - name: run
    handler: record
`)
	s, err := structpb.NewStruct(map[string]any{"n": "two"})
	require.NoError(t, err)
	resp, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{
		Namespace: "test", Name: "debounced", Context: s, Debounce: &coordinatorv1.Debounce{Key: "k", Delay: durationpb.New(time.Hour)},
	})
	require.NoError(t, err, "valid for 2.0.0, and for 1.0.0, which has no schema")
	require.Equal(t, "1.0.0", resp.GetTask().GetVersion(), "the task keeps its version")
}

// The open debounced task survives a restart of its coordinator: the next
// create folds into it, and it starts at the time that create set.
func TestDebouncedTaskAcrossARestart(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	r := newRuns()
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), map[string]executor.HandlerFunc{"record": r.handler()})
	h.apply(debouncedTemplate)
	first, err := debounce(h.ctx, h.client, "k", 1, time.Hour)
	require.NoError(t, err)
	require.True(t, first.GetCreated())

	n.crash()
	n.start()
	var again *coordinatorv1.CreateTaskResponse
	require.Eventually(t, func() bool {
		again, err = debounce(h.ctx, h.client, "k", 2, time.Hour)
		return status.Code(err) != codes.Unavailable // the client reconnects on its own
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, err)
	require.False(t, again.GetCreated())
	require.Equal(t, first.GetTask().GetId(), again.GetTask().GetId())
	require.Equal(t, 2, contextN(t, h.get(first.GetTask().GetId())))

	n.crash()
	n.start()
	var last *coordinatorv1.CreateTaskResponse
	require.Eventually(t, func() bool {
		last, err = debounce(h.ctx, h.client, "k", 3, 50*time.Millisecond)
		return status.Code(err) != codes.Unavailable
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, first.GetTask().GetId(), last.GetTask().GetId())
	h.waitState(first.GetTask().GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, []string{`{"n":3}`}, r.of(first.GetTask().GetId()))
}

// Coordinators sharing a database agree on one debounced task: creates sent
// to any of them fold into it, on its owner (the others forward), and it
// runs once, on its owner, with the last context.
func testDebouncedOnTwoCoordinators(t *testing.T, a, b *harness) {
	r := newRuns()
	runExecutor(a, executor.Config{Capacity: 4}, listen(t), map[string]executor.HandlerFunc{"record": r.handler()})
	a.apply(debouncedTemplate)
	clients := []coordinatorv1.CoordinatorServiceClient{a.client, b.client}

	// A burst from both sides, before either owns a task with the key.
	for i := range 3 {
		burst(t, a.ctx, clients, fmt.Sprintf("burst-%d", i), 12)
	}

	// Owned by a (created there), folded into through b, started by a.
	first, err := debounce(a.ctx, a.client, "k", 1, time.Hour)
	require.NoError(t, err)
	require.True(t, first.GetCreated())
	viaB, err := debounce(b.ctx, b.client, "k", 2, 50*time.Millisecond)
	require.NoError(t, err)
	require.False(t, viaB.GetCreated())
	require.Equal(t, first.GetTask().GetId(), viaB.GetTask().GetId())
	require.Equal(t, 2, contextN(t, viaB.GetTask()))
	a.waitState(first.GetTask().GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, []string{`{"n":2}`}, r.of(first.GetTask().GetId()))
	next, err := debounce(b.ctx, b.client, "k", 3, time.Hour)
	require.NoError(t, err)
	require.True(t, next.GetCreated())
}

func TestDebouncedOnTwoCoordinatorsSQLite(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	testDebouncedOnTwoCoordinators(t, peerHarness(t, st, "coord-a"), peerHarness(t, st, "coord-b"))
}

func TestDebouncedOnTwoCoordinatorsPostgres(t *testing.T) {
	t.Parallel()
	schema := newPostgresSchema(t)
	testDebouncedOnTwoCoordinators(t, peerHarness(t, openPostgres(t, schema), "coord-a"), peerHarness(t, openPostgres(t, schema), "coord-b"))
}

// A debounced task's flow control keys come from the context it starts
// with: a fold that changes the customer moves it to that customer's key.
// lateDebounceStore is a real store whose debounce folds finish only after
// the start time they set, as a write slower than a short delay does.
type lateDebounceStore struct{ store.Store }

func (s lateDebounceStore) TaskDebounce(ctx context.Context, p *store.TaskDebounceParams) error {
	time.Sleep(time.Until(p.RunAt) + time.Millisecond)
	return s.Store.TaskDebounce(ctx, p)
}

// TestDebounceWriteSlowerThanItsDelay: a fold whose write ends after the
// start time it set still starts the task. The coordinator armed the
// task's wake only for a start time still ahead when the write ended, so
// such a task stayed pending with nothing to start it (seen under load as
// a rare failure of TestDebouncedTaskTakesTheKeysOfItsLastContext).
func TestDebounceWriteSlowerThanItsDelay(t *testing.T) {
	t.Parallel()
	h := storeHarness(t, lateDebounceStore{openSQLite(t)}, coordinator.Config{})
	f := startFakeExecutor(t, "exec-late", 10, "record")
	f.register(h)
	h.apply(debouncedTemplate)
	first, err := debounce(h.ctx, h.client, "k", 1, time.Hour)
	require.NoError(t, err)
	folded, err := debounce(h.ctx, h.client, "k", 2, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, first.GetTask().GetId(), folded.GetTask().GetId())

	started := f.next()
	require.Equal(t, first.GetTask().GetId(), started.GetTaskId())
	require.JSONEq(t, `{"n":2}`, string(started.GetContext()))
	f.send(succeed(started, "exec-late"))
	h.waitState(first.GetTask().GetId(), coordinatorv1.State_STATE_COMPLETE)
}

func TestDebouncedTaskTakesTheKeysOfItsLastContext(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	f := startFakeExecutor(t, "exec-d", 10, "work")
	f.register(h)
	h.apply(keyedTemplate("queue"))
	running := h.create("test", "keyed-queue", map[string]any{"customer": "acme"})
	first := f.next()
	require.Equal(t, running.GetId(), first.GetTaskId(), "acme's key is full from now on")

	create := func(customer string, delay time.Duration) *coordinatorv1.CreateTaskResponse {
		s, err := structpb.NewStruct(map[string]any{"customer": customer})
		require.NoError(t, err)
		resp, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{
			Namespace: "test", Name: "keyed-queue", Context: s,
			Debounce: &coordinatorv1.Debounce{Key: "d", Delay: durationpb.New(delay)},
		})
		require.NoError(t, err)
		return resp
	}
	d := create("acme", time.Hour)
	folded := create("globex", 10*time.Millisecond)
	require.Equal(t, d.GetTask().GetId(), folded.GetTask().GetId())
	var started *executorv1.ExecuteStep
	select {
	case started = <-f.steps:
	case <-time.After(10 * time.Second):
		// Say what the task looked like. This failed about once in 50
		// runs under load while a fold's write could outlast its delay
		// (TestDebounceWriteSlowerThanItsDelay).
		task := h.get(d.GetTask().GetId())
		t.Fatalf("executor exec-d received no step; the debounced task: state %s, run_at %s (now %s), context %v, step waiting %v",
			task.GetState(), task.GetRunAt().AsTime().Format(time.RFC3339Nano), time.Now().Format(time.RFC3339Nano),
			task.GetContext().AsMap(), step(task, "sync").GetWaiting())
	}
	require.Equal(t, d.GetTask().GetId(), started.GetTaskId(), "it runs under globex's key, not behind acme")
	require.JSONEq(t, `{"customer":"globex"}`, string(started.GetContext()))

	// A context whose keys do not evaluate is refused, and the task keeps
	// the one it had.
	e := create("acme", time.Hour)
	_, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{
		Namespace: "test", Name: "keyed-queue", Debounce: &coordinatorv1.Debounce{Key: "d", Delay: durationpb.New(time.Hour)},
	})
	requireCode(t, err, codes.InvalidArgument, "concurrency[0].key")
	require.Equal(t, "acme", h.get(e.GetTask().GetId()).GetContext().GetFields()["customer"].GetStringValue())
	f.send(succeed(first, "exec-d"))
	f.send(succeed(started, "exec-d"))
}
