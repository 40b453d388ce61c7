package coordinator_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// faultStore is a real SQLite store that can be told to refuse writes while
// still serving reads, as a PostgreSQL standby after a failover or a full
// disk does, and counts what is asked of it.
type faultStore struct {
	store.Store
	refuseWrites atomic.Bool
	taskGets     atomic.Int64
	advances     atomic.Int64

	mu       sync.Mutex // protects getTimes
	getTimes []time.Time
}

// readTimes says when TaskGet was called, in order.
func (f *faultStore) readTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.getTimes)
}

var errReadOnly = fmt.Errorf("cannot execute UPDATE in a read-only transaction: %w", store.ErrUnavailable)

func (f *faultStore) TaskAdvance(ctx context.Context, p *store.TaskAdvanceParams) ([]*store.Transition, error) {
	f.advances.Add(1)
	if f.refuseWrites.Load() {
		return nil, errReadOnly
	}
	return f.Store.TaskAdvance(ctx, p)
}

func (f *faultStore) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.Task, bool, error) {
	if f.refuseWrites.Load() {
		return nil, false, errReadOnly
	}
	return f.Store.TaskCreate(ctx, p)
}

func (f *faultStore) TaskGet(ctx context.Context, id string) (*store.Task, error) {
	f.taskGets.Add(1)
	f.mu.Lock()
	f.getTimes = append(f.getTimes, time.Now())
	f.mu.Unlock()
	return f.Store.TaskGet(ctx, id)
}

// storeHarness serves a coordinator on the given store.
func storeHarness(t *testing.T, st store.Store, cfg coordinator.Config) *harness {
	t.Helper()
	cfg.Store = st
	return serveCoordinator(t, cfg, nil)
}

// A store that serves reads but refuses writes gets one reload of the
// broken task per backoff, from one repairer: each reload reads the task
// once, so the reads the store sees equal the reloads counted. (One task's
// repairs used to multiply: every failed reload started another repairer.)
// Once writes are taken again, the held result lands and the task finishes.
func TestStoreRefusingWritesGetsOneRepairerWithBackoff(t *testing.T) {
	t.Parallel()
	fs := &faultStore{Store: openSQLite(t)}
	reg := prometheus.NewRegistry()
	h := storeHarness(t, fs, coordinator.Config{Registerer: reg, ExecutorGrace: time.Minute})
	h.coord.SetRepairWait(time.Millisecond)
	g := newGate()
	runExecutor(h, executorConfig(4), listen(t), gatedHandlers(g))
	h.apply(`
namespace: test
name: read_only
version: 1.0.0
steps:
  - name: work
    handler: gated
  - name: next
    handler: noop
    depends_on: [work]
`)
	task := h.create("test", "read_only", map[string]any{})
	g.waitStarted(t)

	fs.refuseWrites.Store(true)
	gets0 := fs.taskGets.Load()
	close(g.release)
	const reloads = 6
	require.Eventually(t, func() bool { return metricValue(t, reg, "tasker_task_reloads_total") >= reloads },
		20*time.Second, time.Millisecond, "the broken task is reloaded again and again while writes are refused")
	// Reads and reloads are sampled one after the other while the
	// repairer may be between the two, hence the slack of one.
	r1 := metricValue(t, reg, "tasker_task_reloads_total")
	gets := float64(fs.taskGets.Load() - gets0)
	r2 := metricValue(t, reg, "tasker_task_reloads_total")
	require.GreaterOrEqual(t, gets, r1-1)
	require.LessOrEqual(t, gets, r2+1, "one read per reload: no second repairer")
	require.True(t, h.coord.InMemory(task.GetId()))

	fs.refuseWrites.Store(false)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 1, step(done, "work").GetAttempts(), "the held result was applied, not re-run")
}

// slowStore is a store whose writes, once blocked, finish only some time
// after their caller gave up on them, as a commit already taken by the
// database does.
type slowStore struct {
	store.Store
	block    atomic.Bool
	entered  chan struct{}
	inCalls  atomic.Int32
	finished atomic.Int32
}

func (s *slowStore) TaskAdvance(ctx context.Context, p *store.TaskAdvanceParams) ([]*store.Transition, error) {
	if !s.block.Load() {
		return s.Store.TaskAdvance(ctx, p)
	}
	s.inCalls.Add(1)
	defer s.inCalls.Add(-1)
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	// A commit the database already took runs to its end after its caller
	// gave up: here for 50 ms, as an emulated slow commit, not a wait for
	// anything. The test holds however long it takes, since Stop must wait
	// for it; the delay only makes a Stop that does not wait show.
	time.Sleep(50 * time.Millisecond)
	s.finished.Add(1)
	return nil, fmt.Errorf("commit interrupted: %w", store.ErrUnavailable)
}

// The retry of a step comes due while the store refuses writes: the
// dispatch's write fails, and so does every reload's, since each reload
// dispatches the due retry again. One repairer reloads the task, waiting
// longer each time (first 10 ms, then twice as long): the store's reads
// are spaced at least that far apart, which no number of concurrent
// repairers could manage (each failed reload used to start another, and
// the reads came back to back). Once writes are taken, the retry runs.
func TestStoreRefusingWritesDuringARetryIsRepairedWithBackoff(t *testing.T) {
	t.Parallel()
	fs := &faultStore{Store: openSQLite(t)}
	h := storeHarness(t, fs, coordinator.Config{ExecutorGrace: time.Minute})
	const firstWait = 10 * time.Millisecond
	h.coord.SetRepairWait(firstWait)
	runExecutor(h, executorConfig(4), listen(t), nil)
	h.apply(`
namespace: test
name: retry_read_only
version: 1.0.0
steps:
  - name: shaky
    handler: flaky
    config: {fail_times: 1}
    backoff: {initial: 1s, multiplier: 1, max: 1s}
`)
	task := h.create("test", "retry_read_only", map[string]any{})
	// Writes are refused from the moment attempt 1 has failed, well
	// before its retry comes due a second later.
	require.Eventually(t, func() bool {
		return step(h.get(task.GetId()), "shaky").GetState() == coordinatorv1.State_STATE_ERROR
	}, 10*time.Second, time.Millisecond)
	fs.refuseWrites.Store(true)
	from := len(fs.readTimes())
	const reloads = 6
	require.Eventually(t, func() bool { return len(fs.readTimes()) >= from+reloads }, 20*time.Second, time.Millisecond,
		"the broken task is reloaded again and again while writes are refused")
	reads := fs.readTimes()[from:]
	wait := firstWait
	for i := 1; i < reloads; i++ {
		wait *= 2 // the first reload waited firstWait after the failed dispatch
		require.GreaterOrEqual(t, reads[i].Sub(reads[i-1]), wait, "reload %d came %s after the one before, not after its backoff", i+1, reads[i].Sub(reads[i-1]))
	}
	require.True(t, h.coord.InMemory(task.GetId()))

	fs.refuseWrites.Store(false)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 2, step(done, "shaky").GetAttempts())
}

// Stop returns only once every goroutine of the coordinator has ended, so
// the store can be closed after it: here a result's write is still in the
// store when Stop is called, and has finished when Stop returns.
func TestStopWaitsForWritesInProgress(t *testing.T) {
	t.Parallel()
	st := &slowStore{Store: openSQLite(t), entered: make(chan struct{}, 1)}
	h := storeHarness(t, st, coordinator.Config{ExecutorGrace: time.Minute})
	f := startFakeExecutor(t, "exec-s", 1, "work")
	f.register(h)
	h.apply(oneStepTemplate)
	h.create("test", "one_step", map[string]any{})
	running := f.next()
	st.block.Store(true)
	f.send(succeed(running, "exec-s"))
	select {
	case <-st.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the result's write never reached the store")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace for results in flight: stop at once
	_ = h.coord.Stop(ctx)
	require.Zero(t, st.inCalls.Load(), "Stop returned while a write it started was still in the store")
	require.EqualValues(t, 1, st.finished.Load())
}

// lostAckStore commits creations, then reports a failure, as a database
// whose connection drops after COMMIT does.
type lostAckStore struct {
	store.Store
	loseAck atomic.Bool
}

func (s *lostAckStore) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.Task, bool, error) {
	t, created, err := s.Store.TaskCreate(ctx, p)
	if err == nil && s.loseAck.CompareAndSwap(true, false) {
		return nil, false, fmt.Errorf("connection reset after COMMIT: %w", store.ErrUnavailable)
	}
	return t, created, err
}

// A creation whose outcome the coordinator could not learn (it committed,
// then the connection dropped) is not stranded: the coordinator reads the
// store, finds the task, and carries it on; its roots, recorded as
// dispatched but never sent, are presumed lost and run. A client retrying
// with the same idempotency key gets that task.
func TestCreatedTaskWithLostAcknowledgementRuns(t *testing.T) {
	t.Parallel()
	st := &lostAckStore{Store: openSQLite(t)}
	h := storeHarness(t, st, coordinator.Config{ExecutorGrace: 50 * time.Millisecond})
	h.coord.SetRepairWait(time.Millisecond)
	runExecutor(h, executorConfig(4), listen(t), nil)
	h.apply(`
namespace: test
name: lost_ack
version: 1.0.0
steps:
  - name: root
    handler: noop
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
  - name: leaf
    handler: noop
    depends_on: [root]
`)
	st.loseAck.Store(true)
	req := &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "lost_ack", IdempotencyKey: "once"}
	_, err := h.client.CreateTask(h.ctx, req)
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	list, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetTasks(), 1, "the create committed")
	id := list.GetTasks()[0].GetId()
	done := h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 2, step(done, "root").GetAttempts(), "the recorded dispatch was never sent: presumed lost, then run")

	resp, err := h.client.CreateTask(h.ctx, req)
	require.NoError(t, err)
	require.False(t, resp.GetCreated())
	require.Equal(t, id, resp.GetTask().GetId())
}

// fullStore is a real SQLite store whose every write, the lease's
// included, fails while full is set, as on a full disk, while reads go on.
type fullStore struct {
	store.Store
	full atomic.Bool
	// refuseCompletions fails only the writes that complete a step,
	// counting them in completionsRefused.
	refuseCompletions  atomic.Bool
	completionsRefused atomic.Int64
	// refuseWork fails task creations and advances only, as a nearly full
	// disk does: the lease's small writes still fit.
	refuseWork atomic.Bool
}

var errFull = fmt.Errorf("commit: database or disk is full: %w", store.ErrUnavailable)

func (f *fullStore) TaskAdvance(ctx context.Context, p *store.TaskAdvanceParams) ([]*store.Transition, error) {
	if f.full.Load() || f.refuseWork.Load() {
		return nil, errFull
	}
	if f.refuseCompletions.Load() && slices.ContainsFunc(p.Steps, func(c *store.StepChange) bool { return c.To == state.Complete }) {
		f.completionsRefused.Add(1)
		return nil, errFull
	}
	return f.Store.TaskAdvance(ctx, p)
}

func (f *fullStore) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.Task, bool, error) {
	if f.full.Load() || f.refuseWork.Load() {
		return nil, false, errFull
	}
	return f.Store.TaskCreate(ctx, p)
}

func (f *fullStore) LeaseAcquire(ctx context.Context, p *store.LeaseAcquireParams) (*store.Lease, error) {
	if f.full.Load() {
		return nil, errFull
	}
	return f.Store.LeaseAcquire(ctx, p)
}

func (f *fullStore) LeaseRenew(ctx context.Context, p *store.LeaseRenewParams) (*store.Lease, error) {
	if f.full.Load() {
		return nil, errFull
	}
	return f.Store.LeaseRenew(ctx, p)
}

func (f *fullStore) TaskClaim(ctx context.Context, p *store.TaskClaimParams) ([]*store.Task, error) {
	if f.full.Load() {
		return nil, errFull
	}
	return f.Store.TaskClaim(ctx, p)
}

func (f *fullStore) TaskTake(ctx context.Context, p *store.TaskTakeParams) (*store.Task, error) {
	if f.full.Load() {
		return nil, errFull
	}
	return f.Store.TaskTake(ctx, p)
}

// A result that arrives while the store takes no writes, and stays
// unwritable past the coordinator's lease (a disk full for longer than
// the lease's life), is held through the lease's loss and applied once
// the store takes writes again: the step completes on the attempt that
// ran, rather than being presumed lost and run again. (The held result
// used to be dropped when the lease lapsed and the task was dropped with
// it: found by filling the disk under a coordinator on tmpfs.)
func TestResultHeldThroughLeaseLossWhileStoreIsFull(t *testing.T) {
	t.Parallel()
	fs := &fullStore{Store: openSQLite(t)}
	reg := prometheus.NewRegistry()
	const ttl = 600 * time.Millisecond
	h := storeHarness(t, fs, coordinator.Config{Registerer: reg, LeaseTTL: ttl, ExecutorGrace: 200 * time.Millisecond})
	h.coord.SetRepairWait(time.Millisecond)
	g := newGate()
	runExecutor(h, executorConfig(4), listen(t), gatedHandlers(g))
	h.apply(`
namespace: test
name: full_disk
version: 1.0.0
steps:
  - name: work
    handler: gated
    retry_limit: 1
  - name: next
    handler: noop
    depends_on: [work]
`)
	task := h.create("test", "full_disk", map[string]any{})
	g.waitStarted(t)

	fs.full.Store(true)
	close(g.release)
	// The result arrives and cannot be written; the lease then lapses
	// and every task is dropped.
	require.Eventually(t, func() bool { return metricValue(t, reg, "tasker_lease_lost_total") >= 1 },
		20*time.Second, time.Millisecond, "the lease lapses while nothing can be written")
	require.False(t, h.coord.InMemory(task.GetId()))
	// And stays so for several lease lives, well past the time a result
	// for a task held elsewhere is given to settle (two lease lives):
	// each renewal while full counts one more loss.
	require.Eventually(t, func() bool { return metricValue(t, reg, "tasker_lease_lost_total") >= 12 },
		20*time.Second, time.Millisecond)

	// The store takes writes again, but not yet the result's: the task is
	// taken back here, its attempt watched as one whose executor is
	// unknown, and that watch must not fail it while its result is held
	// (a few tries of the result span several grace periods).
	fs.refuseCompletions.Store(true)
	fs.full.Store(false)
	require.Eventually(t, func() bool { return fs.completionsRefused.Load() >= 4 }, 20*time.Second, time.Millisecond)
	require.True(t, h.coord.InMemory(task.GetId()), "the task was taken back")

	fs.refuseCompletions.Store(false)
	done := h.waitState(task.GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(t, 1, step(done, "work").GetAttempts(), "the held result was applied, not presumed lost and run again")
}
