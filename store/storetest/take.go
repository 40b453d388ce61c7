package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

func (s *suite) taskTake(t *testing.T) {
	t.Run("TaskTake", func(t *testing.T) {
		t.Parallel()

		t.Run("TakesUnownedTaskInAnyState", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			l := f.acquire(t, "a")
			for _, st := range state.TaskStates {
				task := f.createIn(t, st)
				got := f.take(t, l, task.ID, f.now())
				requireTask(t, owned(task, l), got)
				requireTask(t, owned(task, l), f.task(t, task.ID))
			}
		})

		t.Run("TakesTaskOfDeadLease", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			expiring := f.acquireAt(t, "old", f.now(), time.Minute)
			replaced := f.acquire(t, "restarting")
			finished := f.createIn(t, state.Complete)
			running := f.createIn(t, state.InProgress)
			f.take(t, expiring, finished.ID, f.now())
			f.take(t, replaced, running.ID, f.now())
			f.acquire(t, "restarting")

			b := f.acquire(t, "b")
			// Expired: a lease is not live at the instant it expires.
			requireTask(t, owned(finished, b), f.take(t, b, finished.ID, expiring.Expires))
			requireTask(t, owned(running, b), f.take(t, b, running.ID, f.now()))
		})

		t.Run("OwnTaskIsUnchanged", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			l := f.acquire(t, "a")
			task := f.createIn(t, state.Pending)
			first := f.take(t, l, task.ID, f.now())
			again := f.take(t, l, task.ID, f.now())
			requireTask(t, first, again)
			requireTask(t, owned(task, l), f.task(t, task.ID))
		})

		t.Run("RefusedWhileAnotherLeaseIsLiveNamingIt", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			owner, err := f.store.LeaseAcquire(f.ctx, &store.LeaseAcquireParams{
				CoordinatorID: "owner", TTL: time.Minute, Now: f.now(), Address: "10.0.0.7:7070",
			})
			require.NoError(t, err)
			b := f.acquire(t, "b")
			for _, st := range []state.State{state.Pending, state.Complete} {
				task := f.take(t, owner, f.createIn(t, st).ID, f.now())

				// The last instant the owner's lease is live.
				got, err := f.store.TaskTake(f.ctx, &store.TaskTakeParams{Lease: b, TaskID: task.ID, Now: owner.Expires.Add(-time.Nanosecond)})
				require.Nil(t, got)
				require.ErrorIs(t, err, store.ErrOwned)
				var owned *store.OwnedError
				require.ErrorAs(t, err, &owned)
				require.Equal(t, task.ID, owned.TaskID)
				requireLeases(t, []*store.Lease{owner}, []*store.Lease{&owned.Owner})
				require.ErrorContains(t, err, "owner", "the message names the owner")
				require.ErrorContains(t, err, "10.0.0.7:7070", "the message says where the owner is")
				require.NotErrorIs(t, err, store.ErrLeaseLost)
				requireTask(t, task, f.task(t, task.ID))
			}
		})

		t.Run("UnknownTaskIsNotFound", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			l := f.acquire(t, "a")
			_, err := f.store.TaskTake(f.ctx, &store.TaskTakeParams{Lease: l, TaskID: newID(), Now: f.now()})
			require.ErrorIs(t, err, store.ErrNotFound)
		})

		t.Run("DeadLeaseIsLost", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task := f.createIn(t, state.Pending)
			for name, dead := range f.deadLeases(t) {
				got, err := f.store.TaskTake(f.ctx, &store.TaskTakeParams{Lease: dead.lease, TaskID: task.ID, Now: dead.now})
				require.ErrorIs(t, err, store.ErrLeaseLost, name)
				require.Nil(t, got, name)
			}
			requireTask(t, task, f.task(t, task.ID))
		})

		t.Run("RejectsBadParams", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task := f.createIn(t, state.Pending)
			l := f.acquire(t, "a")
			for name, p := range map[string]*store.TaskTakeParams{
				"nil":        nil,
				"no lease":   {TaskID: task.ID, Now: f.now()},
				"no task id": {Lease: l, Now: f.now()},
			} {
				got, err := f.store.TaskTake(f.ctx, p)
				require.Error(t, err, name)
				require.Nil(t, got, name)
			}
			requireTask(t, task, f.task(t, task.ID))
		})

		t.Run("FencesTheFormerOwner", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			a := f.acquireAt(t, "a", f.now(), time.Minute)
			b := f.acquire(t, "b")
			f.take(t, a, task.ID, f.now())
			taken := f.take(t, b, task.ID, a.Expires)

			// a's clock lags: it still thinks its lease is live.
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: task.ID, Lease: a, At: a.Expires.Add(-time.Nanosecond),
				Steps: []*store.StepChange{startStep(steps[0])},
			})
			require.ErrorIs(t, err, store.ErrLeaseLost)
			f.requireUntouched(t, taken, steps)
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Lease: b, At: f.now(), Steps: []*store.StepChange{startStep(steps[0])}})
		})

		// Each taker has a store of its own on the one database, as
		// coordinators do.
		t.Run("ConcurrentTakesHaveOneWinner", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			const takers = 6
			task := f.createIn(t, state.InProgress)
			leases := make([]*store.Lease, takers)
			for i := range leases {
				leases[i] = f.acquire(t, fmt.Sprintf("c%d", i))
			}
			now := f.now()

			stores := f.stores(t, takers)
			errs := make([]error, takers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, l := range leases {
				wg.Go(func() {
					<-start
					_, errs[i] = stores[i].TaskTake(f.ctx, &store.TaskTakeParams{Lease: l, TaskID: task.ID, Now: now})
				})
			}
			close(start)
			wg.Wait()

			winner := -1
			for i, err := range errs {
				if err == nil {
					require.Equal(t, -1, winner, "takers %d and %d both took the task", winner, i)
					winner = i
				}
			}
			require.NotEqual(t, -1, winner, "nobody took the task: %v", errors.Join(errs...))
			require.Equal(t, leases[winner].Token, f.task(t, task.ID).OwnerToken)
			for i, err := range errs {
				if i == winner {
					continue
				}
				var owned *store.OwnedError
				require.ErrorAs(t, err, &owned, "taker %d", i)
				require.Equal(t, leases[winner].Token, owned.Owner.Token, "taker %d is told who won", i)
				require.Equal(t, leases[winner].CoordinatorID, owned.Owner.CoordinatorID)
			}
		})
	})
}

// take runs TaskTake and checks what every successful take promises: the
// task comes back owned by the lease, and so it is stored.
func (f *fixture) take(t *testing.T, l *store.Lease, taskID string, now time.Time) *store.Task {
	t.Helper()
	got, err := f.store.TaskTake(f.ctx, &store.TaskTakeParams{Lease: l, TaskID: taskID, Now: now})
	require.NoError(t, err)
	require.Equal(t, taskID, got.ID)
	require.Equal(t, l.Token, got.OwnerToken)
	require.Equal(t, l.Token, f.task(t, taskID).OwnerToken)
	return got
}
