package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// These tests hold TaskTake against the other writers of a task's owner
// across separate stores (separate connections and transactions), where
// only the row locks keep them apart. A write held uncommitted (holdBatch)
// makes each interleaving happen for certain rather than by chance.

// takeFixture is a schema with two stores and an admin connection, and one
// task owned by a lease that is live until expiry: a coordinator whose
// clock lags still thinks it owns the task after that, the others do not.
type takeFixture struct {
	schema string
	a, b   *Store
	// pids are the backends of a's and b's writer connections, read up
	// front: once a write waits, its store's one writer connection is busy.
	pids   map[*Store]int32
	admin  *pgx.Conn
	task   *store.TaskCreateParams
	owner  *store.Lease // the owner, on store a; expires at expiry
	expiry time.Time
}

func newTakeFixture(t *testing.T) *takeFixture {
	t.Helper()
	ctx := t.Context()
	schema := newSchema(t)
	f := &takeFixture{schema: schema, a: openStore(t, Config{Schema: schema}), b: openStore(t, Config{Schema: schema})}
	f.admin = adminConn(t, schema)
	f.pids = map[*Store]int32{f.a: writerPID(t, f.a), f.b: writerPID(t, f.b)}
	f.task = storetest.TaskParams("ns", leaseT0, "a")
	_, _, err := f.a.TaskCreate(ctx, f.task)
	require.NoError(t, err)
	f.owner, err = f.a.LeaseAcquire(ctx, &store.LeaseAcquireParams{CoordinatorID: "owner", TTL: time.Minute, Now: leaseT0, Address: "owner:7070"})
	require.NoError(t, err)
	f.expiry = f.owner.Expires
	_, err = f.a.TaskTake(ctx, &store.TaskTakeParams{Lease: f.owner, TaskID: f.task.Task.ID, Now: leaseT0})
	require.NoError(t, err)
	return f
}

// lease acquires a lease for id on s that outlives the test.
func (f *takeFixture) lease(t *testing.T, s *Store, id string) *store.Lease {
	t.Helper()
	l, err := s.LeaseAcquire(t.Context(), &store.LeaseAcquireParams{CoordinatorID: id, TTL: time.Hour, Now: leaseT0, Address: id + ":7070"})
	require.NoError(t, err)
	return l
}

// takeParams takes the task for l once the owner has expired.
func (f *takeFixture) takeParams(l *store.Lease) *store.TaskTakeParams {
	return &store.TaskTakeParams{Lease: l, TaskID: f.task.Task.ID, Now: f.expiry}
}

// ownerAdvance starts the task's step under the owner's lease, at a time
// the owner believes its lease live.
func (f *takeFixture) ownerAdvance() *store.TaskAdvanceParams {
	return &store.TaskAdvanceParams{
		TaskID: f.task.Task.ID, Lease: f.owner, At: f.expiry.Add(-time.Second),
		Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
		Steps: []*store.StepChange{{StepID: f.task.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}},
	}
}

func (f *takeFixture) stored(t *testing.T) *store.Task {
	t.Helper()
	task, err := f.a.TaskGet(t.Context(), f.task.Task.ID)
	require.NoError(t, err)
	return task
}

// waitForLock returns once s's committer waits for a row lock.
func (f *takeFixture) waitForLock(t *testing.T, s *Store) {
	t.Helper()
	waitUntil(t, f.admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", f.pids[s])
}

// goTake runs a take on s in the background.
func goTake(ctx context.Context, s *Store, p *store.TaskTakeParams) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := s.TaskTake(ctx, p)
		done <- err
	}()
	return done
}

// requireOwnedBy checks that err is TaskTake's refusal naming l.
func requireOwnedBy(t *testing.T, err error, l *store.Lease) {
	t.Helper()
	var owned *store.OwnedError
	require.ErrorAs(t, err, &owned)
	require.Equal(t, l.Token, owned.Owner.Token)
	require.Equal(t, l.CoordinatorID, owned.Owner.CoordinatorID)
	require.Equal(t, l.Address, owned.Owner.Address)
	require.True(t, l.Expires.Equal(owned.Owner.Expires), "owner expires %s, error says %s", l.Expires, owned.Owner.Expires)
}

// TestTakeWaitsForTakeInProgress: a take that finds the task locked by
// another coordinator's uncommitted take waits for it, then is refused
// naming that coordinator, although its statement began before the
// winner's take committed.
func TestTakeWaitsForTakeInProgress(t *testing.T) {
	t.Parallel()
	f := newTakeFixture(t)
	first, second := f.lease(t, f.a, "first"), f.lease(t, f.b, "second")

	commit := holdBatch(t, f.a, f.admin, func(p *pipe) { queueTake(p, f.takeParams(first)) })
	done := goTake(t.Context(), f.b, f.takeParams(second))
	f.waitForLock(t, f.b)
	require.NoError(t, commit())

	requireOwnedBy(t, <-done, first)
	require.Equal(t, first.Token, f.stored(t).OwnerToken)
}

// TestTakeRechecksOwnerAfterLocking pauses a take after its statement's
// snapshot is taken, while another coordinator, with a lease acquired after
// that snapshot, takes the task. The paused take must see the new owner as
// live (it is not in its snapshot) and be refused naming it.
func TestTakeRechecksOwnerAfterLocking(t *testing.T) {
	t.Parallel()
	f := newTakeFixture(t)
	slow := f.lease(t, f.a, "slow")
	pause := pauseLeaseLive(t, f.admin, f.a)
	done := goTake(t.Context(), f.a, f.takeParams(slow))
	pause.waitPaused()

	fast := f.lease(t, f.b, "fast")
	_, err := f.b.TaskTake(t.Context(), f.takeParams(fast))
	require.NoError(t, err)

	pause.resume()
	requireOwnedBy(t, <-done, fast)
	require.Equal(t, fast.Token, f.stored(t).OwnerToken)
}

// TestTakeWaitsForFencedAdvance: the owner's fenced advance, uncommitted,
// holds the task; a take after the owner's expiry waits for it, so the
// owner's last write lands whole before the task changes hands, and the
// owner's next write is refused.
func TestTakeWaitsForFencedAdvance(t *testing.T) {
	t.Parallel()
	f := newTakeFixture(t)
	taker := f.lease(t, f.b, "taker")

	commit := holdBatch(t, f.a, f.admin, func(p *pipe) { queueAdvance(p, f.ownerAdvance()) })
	done := goTake(t.Context(), f.b, f.takeParams(taker))
	f.waitForLock(t, f.b)
	require.NoError(t, commit())
	require.NoError(t, <-done)

	storetest.RequireTaskState(t, f.a, f.task.Task.ID, state.InProgress, 1)
	require.Equal(t, taker.Token, f.stored(t).OwnerToken)
	next := f.ownerAdvance()
	next.Task, next.Steps = nil, []*store.StepChange{{StepID: f.task.Steps[0].ID, From: state.InProgress, To: state.Complete, ExpectAttempts: 1, Attempts: 1}}
	_, err := f.a.TaskAdvance(t.Context(), next)
	require.ErrorIs(t, err, store.ErrLeaseLost)
}

// TestFenceWaitsForTakeInProgress: the other way round, a take holds the
// task uncommitted when the owner (its clock lagging) advances it: the
// fence waits for the take, then refuses, and nothing of the advance is
// stored.
func TestFenceWaitsForTakeInProgress(t *testing.T) {
	t.Parallel()
	f := newTakeFixture(t)
	taker := f.lease(t, f.b, "taker")

	commit := holdBatch(t, f.b, f.admin, func(p *pipe) { queueTake(p, f.takeParams(taker)) })
	done := make(chan error, 1)
	go func() {
		_, err := f.a.TaskAdvance(t.Context(), f.ownerAdvance())
		done <- err
	}()
	f.waitForLock(t, f.a)
	require.NoError(t, commit())

	err := <-done
	require.ErrorIs(t, err, store.ErrLeaseLost)
	require.ErrorContains(t, err, fmt.Sprintf("task is owned by lease %d, not %d", taker.Token, f.owner.Token))
	storetest.RequireTaskState(t, f.a, f.task.Task.ID, state.Pending, 0)
}

// TestTakeAndClaimDoNotShareATask: a claim skips a task a take holds, and a
// take waits for a claim that holds the task, then names the claimer.
func TestTakeAndClaimDoNotShareATask(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("claim skips a take in progress", func(t *testing.T) {
		t.Parallel()
		f := newTakeFixture(t)
		taker, claimer := f.lease(t, f.b, "taker"), f.lease(t, f.a, "claimer")
		commit := holdBatch(t, f.b, f.admin, func(p *pipe) { queueTake(p, f.takeParams(taker)) })
		claimed, err := f.a.TaskClaim(ctx, &store.TaskClaimParams{Lease: claimer, Now: f.expiry})
		require.NoError(t, err)
		require.Empty(t, claimed)
		require.NoError(t, commit())
		require.Equal(t, taker.Token, f.stored(t).OwnerToken)
	})

	t.Run("take waits for a claim in progress", func(t *testing.T) {
		t.Parallel()
		f := newTakeFixture(t)
		taker, claimer := f.lease(t, f.b, "taker"), f.lease(t, f.a, "claimer")
		var claimed *claimResult
		commit := holdBatch(t, f.a, f.admin, func(p *pipe) {
			claimed = queueClaim(p, &store.TaskClaimParams{Lease: claimer, Now: f.expiry})
		})
		done := goTake(ctx, f.b, f.takeParams(taker))
		f.waitForLock(t, f.b)
		require.NoError(t, commit())
		require.Equal(t, []string{f.task.Task.ID}, taskIDsOf(claimed.tasks))
		requireOwnedBy(t, <-done, claimer)
		require.Equal(t, claimer.Token, f.stored(t).OwnerToken)
	})
}
