package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// leaseTTL outlasts every f.now() a test takes (about a second each), so a
// lease acquired with it stays live unless a test picks a time past Expires.
const leaseTTL = time.Hour

func (s *suite) leases(t *testing.T) {
	s.leaseAcquire(t)
	s.leaseRenew(t)
	s.leaseList(t)
	s.taskClaim(t)
	s.taskAdvanceWithLease(t)
	s.taskCreateWithOwner(t)
}

func (s *suite) leaseAcquire(t *testing.T) {
	t.Run("LeaseAcquire", func(t *testing.T) {
		t.Parallel()

		t.Run("TokensOnlyGrow", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			var last int64
			// Tokens are global, not per coordinator: a restart (a again)
			// and a newcomer both get a larger token than anyone before.
			for _, id := range []string{"a", "b", "a", "c", "b", "a"} {
				now := f.now()
				l := f.acquireAt(t, id, now, leaseTTL)
				require.Equal(t, id, l.CoordinatorID)
				require.Greater(t, l.Token, last, "token of %s", id)
				requireTimeEqual(t, now.Add(leaseTTL), l.Expires, "Expires")
				last = l.Token
			}
		})

		t.Run("ReplacesLeaseOfSameCoordinator", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			old := f.acquire(t, "a")
			other := f.acquire(t, "b")
			replaced := f.acquire(t, "a")
			require.Greater(t, replaced.Token, old.Token)

			_, err := f.store.LeaseRenew(f.ctx, &store.LeaseRenewParams{Lease: old, TTL: leaseTTL, Now: f.now()})
			require.ErrorIs(t, err, store.ErrLeaseLost)
			requireLeases(t, []*store.Lease{replaced, other}, f.leaseList(t, f.now()))

			_, err = f.store.LeaseRenew(f.ctx, &store.LeaseRenewParams{Lease: replaced, TTL: leaseTTL, Now: f.now()})
			require.NoError(t, err)
		})

		t.Run("StoresAddress", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			acquire := func(id, addr string) *store.Lease {
				l, err := f.store.LeaseAcquire(f.ctx, &store.LeaseAcquireParams{CoordinatorID: id, TTL: leaseTTL, Now: f.now(), Address: addr})
				require.NoError(t, err)
				require.Equal(t, addr, l.Address)
				return l
			}
			a := acquire("a", "10.0.0.1:7070")
			b := acquire("b", "")
			requireLeases(t, []*store.Lease{a, b}, f.leaseList(t, f.now()))

			// A renewal answers with the stored address, whatever the
			// caller's copy says.
			stale := *a
			stale.Address = ""
			renewed, err := f.store.LeaseRenew(f.ctx, &store.LeaseRenewParams{Lease: &stale, TTL: leaseTTL, Now: f.now()})
			require.NoError(t, err)
			require.Equal(t, "10.0.0.1:7070", renewed.Address)

			// A restart may come back elsewhere.
			moved := acquire("a", "10.0.0.2:7070")
			requireLeases(t, []*store.Lease{moved, b}, f.leaseList(t, f.now()))
		})

		t.Run("RejectsBadParams", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			for name, p := range map[string]*store.LeaseAcquireParams{
				"nil":       nil,
				"no id":     {TTL: leaseTTL, Now: f.now()},
				"zero TTL":  {CoordinatorID: "a", Now: f.now()},
				"minus TTL": {CoordinatorID: "a", TTL: -time.Second, Now: f.now()},
			} {
				l, err := f.store.LeaseAcquire(f.ctx, p)
				require.Error(t, err, name)
				require.Nil(t, l, name)
			}
			require.Empty(t, f.leaseList(t, f.now()))
		})
	})
}

func (s *suite) leaseRenew(t *testing.T) {
	t.Run("LeaseRenew", func(t *testing.T) {
		t.Parallel()

		t.Run("ExtendsLiveLease", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			l := f.acquireAt(t, "a", f.now(), time.Minute)
			now := l.Expires.Add(-time.Nanosecond) // the last instant it is live
			renewed, err := f.store.LeaseRenew(f.ctx, &store.LeaseRenewParams{Lease: l, TTL: leaseTTL, Now: now})
			require.NoError(t, err)
			require.Equal(t, l.CoordinatorID, renewed.CoordinatorID)
			require.Equal(t, l.Token, renewed.Token)
			requireTimeEqual(t, now.Add(leaseTTL), renewed.Expires, "renewed Expires")

			// Stored: live past the old expiry, with the new one.
			requireLeases(t, []*store.Lease{renewed}, f.leaseList(t, l.Expires.Add(time.Second)))
			// Renewing the renewed lease works too, with its token.
			_, err = f.store.LeaseRenew(f.ctx, &store.LeaseRenewParams{Lease: renewed, TTL: leaseTTL, Now: l.Expires.Add(time.Second)})
			require.NoError(t, err)
		})

		t.Run("ExpiredLeaseIsLost", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			l := f.acquireAt(t, "a", f.now(), time.Minute)
			late, err := f.store.LeaseRenew(f.ctx, &store.LeaseRenewParams{Lease: l, TTL: leaseTTL, Now: l.Expires.Add(time.Nanosecond)})
			require.ErrorIs(t, err, store.ErrLeaseLost)
			require.Nil(t, late)
			// The refusal changed nothing: the lease still ends when it did.
			requireLeases(t, []*store.Lease{l}, f.leaseList(t, l.Expires.Add(-time.Nanosecond)))
			require.Empty(t, f.leaseList(t, l.Expires.Add(time.Nanosecond)))
		})

		t.Run("UnknownLeaseIsLost", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			l := f.acquire(t, "a")
			for name, ghost := range map[string]*store.Lease{
				"unknown coordinator": {CoordinatorID: "ghost", Token: l.Token + 1000, Expires: l.Expires},
				"unknown token":       {CoordinatorID: "a", Token: l.Token + 1000, Expires: l.Expires},
			} {
				_, err := f.store.LeaseRenew(f.ctx, &store.LeaseRenewParams{Lease: ghost, TTL: leaseTTL, Now: f.now()})
				require.ErrorIs(t, err, store.ErrLeaseLost, name)
			}
			requireLeases(t, []*store.Lease{l}, f.leaseList(t, f.now()))
		})
	})
}

func (s *suite) leaseList(t *testing.T) {
	t.Run("LeaseList", func(t *testing.T) {
		t.Parallel()

		t.Run("OnlyLiveLeasesByCoordinator", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			t0 := f.now()
			c := f.acquireAt(t, "c", t0, time.Hour)
			a := f.acquireAt(t, "a", t0, time.Hour)
			b := f.acquireAt(t, "b", t0, time.Minute)

			requireLeases(t, []*store.Lease{a, b, c}, f.leaseList(t, t0.Add(30*time.Second)))
			requireLeases(t, []*store.Lease{a, c}, f.leaseList(t, t0.Add(2*time.Minute)))
			require.Empty(t, f.leaseList(t, t0.Add(2*time.Hour)))
		})
	})
}

func (s *suite) taskClaim(t *testing.T) {
	t.Run("TaskClaim", func(t *testing.T) {
		t.Parallel()

		t.Run("TakesUnownedActiveTasksOldestFirst", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			first := f.createIn(t, state.Pending)
			second := f.createIn(t, state.InProgress)
			var finished []*store.Task
			for _, st := range []state.State{state.Complete, state.Error, state.Cancelled, state.ResolvedManually} {
				finished = append(finished, f.createIn(t, st))
			}
			third := f.createIn(t, state.Pending)
			l := f.acquire(t, "a")

			got := f.claim(t, l, f.now(), 2)
			requireTasks(t, []*store.Task{owned(first, l), owned(second, l)}, got)
			got = f.claim(t, l, f.now(), 100)
			requireTasks(t, []*store.Task{owned(third, l)}, got)
			require.Empty(t, f.claim(t, l, f.now(), 100))

			// The owner is stored and every read returns it.
			requireTask(t, owned(first, l), f.task(t, first.ID))
			active, err := f.store.TaskListActive(f.ctx, &store.TaskListActiveParams{})
			require.NoError(t, err)
			requireTasks(t, []*store.Task{owned(first, l), owned(second, l), owned(third, l)}, active)
			all, err := f.store.TaskList(f.ctx, &store.TaskListParams{})
			require.NoError(t, err)
			require.Len(t, all, 7)
			for _, task := range all {
				want := int64(0)
				if task.State == state.Pending || task.State == state.InProgress {
					want = l.Token
				}
				require.Equal(t, want, task.OwnerToken, "%s task %s", task.State, task.ID)
			}
			for _, task := range finished {
				requireTask(t, task, f.task(t, task.ID))
			}
		})

		t.Run("TakesTasksThatFailWhileAStepRuns", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			a := f.acquire(t, "a")
			// Both steps start; b fails for good and fails the task while
			// a still runs, all through TaskAdvance.
			task := f.create(t, f.taskParams("linear", "a", "b"))
			first, second := f.stepByName(t, task.ID, "a"), f.stepByName(t, task.ID, "b")
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(),
				Steps: []*store.StepChange{startStep(first), startStep(second)},
				Task:  &store.TaskChange{From: state.Pending, To: state.InProgress}})
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(),
				Steps: []*store.StepChange{{StepID: second.ID, StepName: "b", From: state.InProgress, To: state.Error,
					ExpectAttempts: 1, Attempts: 1, Error: &store.StepError{Message: "no"}}},
				Task: &store.TaskChange{From: state.InProgress, To: state.Error}})

			got := f.claim(t, a, f.now(), 10)
			require.Len(t, got, 1, "failed with a step running: it has work")
			require.Equal(t, task.ID, got[0].ID)

			// a's result ends the work; a later owner finds none.
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Lease: a, At: f.now(), Steps: []*store.StepChange{
				completeStep(f.stepByName(t, task.ID, "a"), 1, `{}`),
			}})
			b := f.acquire(t, "b")
			require.Empty(t, f.claim(t, b, a.Expires, 10), "nothing runs any more")
		})

		t.Run("TakesErroredTasksWithRunningStep", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			// in stores a task in the given state whose one step is in
			// stepState.
			in := func(taskState, stepState state.State) *store.Task {
				p := f.taskParams("linear", "a", "b")
				p.Task.State = taskState
				p.Steps[0].State, p.Steps[0].Attempts = stepState, 1
				return f.create(t, p)
			}
			erroredRunning := in(state.Error, state.InProgress)
			in(state.Error, state.Error)
			in(state.Complete, state.Complete)
			in(state.Cancelled, state.Cancelled)
			active := in(state.InProgress, state.InProgress)
			erroredRunningToo := in(state.Error, state.InProgress)
			// Two running steps make it a candidate once, not twice.
			p := f.taskParams("linear", "a", "b")
			p.Task.State = state.Error
			for _, st := range p.Steps {
				st.State, st.Attempts = state.InProgress, 1
			}
			twoRunning := f.create(t, p)
			a, b := f.acquire(t, "a"), f.acquire(t, "b")

			want := []*store.Task{owned(erroredRunning, a), owned(active, a), owned(erroredRunningToo, a)}
			requireTasks(t, want, f.claim(t, a, f.now(), 3))
			requireTasks(t, []*store.Task{owned(twoRunning, a)}, f.claim(t, a, f.now(), 3))
			require.Empty(t, f.claim(t, a, f.now(), 3))
			require.Empty(t, f.claim(t, b, f.now(), 0), "a's tasks stay a's while it is live")

			// Once the running step records its result, the errored task
			// has no work left and is claimed no more.
			f.advance(t, &store.TaskAdvanceParams{TaskID: erroredRunning.ID, Lease: a, At: f.now(), Steps: []*store.StepChange{
				completeStep(f.stepByName(t, erroredRunning.ID, "a"), 1, `{}`),
			}})
			got := f.claim(t, b, a.Expires, 0)
			requireTasks(t, []*store.Task{owned(active, b), owned(erroredRunningToo, b), owned(twoRunning, b)}, got)
		})

		t.Run("NeverTakesTasksOfLiveLease", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			tasks := []*store.Task{f.createIn(t, state.Pending), f.createIn(t, state.InProgress)}
			a, b := f.acquire(t, "a"), f.acquire(t, "b")
			require.Len(t, f.claim(t, a, f.now(), 0), 2)

			require.Empty(t, f.claim(t, b, f.now(), 0))
			// Even at the last instant a's lease is live.
			require.Empty(t, f.claim(t, b, a.Expires.Add(-time.Nanosecond), 0))
			for _, task := range tasks {
				requireTask(t, owned(task, a), f.task(t, task.ID))
			}
		})

		t.Run("TakesTasksOfExpiredLease", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			tasks := []*store.Task{f.createIn(t, state.Pending), f.createIn(t, state.InProgress)}
			a := f.acquireAt(t, "a", f.now(), time.Minute)
			b := f.acquire(t, "b")
			require.Len(t, f.claim(t, a, f.now(), 0), 2)

			got := f.claim(t, b, a.Expires.Add(time.Nanosecond), 0)
			requireTasks(t, []*store.Task{owned(tasks[0], b), owned(tasks[1], b)}, got)
			requireTask(t, owned(tasks[0], b), f.task(t, tasks[0].ID))
		})

		t.Run("TakesTasksOfReplacedLease", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task := f.createIn(t, state.InProgress)
			old := f.acquire(t, "a")
			require.Len(t, f.claim(t, old, f.now(), 0), 1)

			// A restart under the same id takes its tasks back at once,
			// long before the old lease would have expired.
			restarted := f.acquire(t, "a")
			requireTasks(t, []*store.Task{owned(task, restarted)}, f.claim(t, restarted, f.now(), 0))
		})

		t.Run("DeadLeaseIsLost", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task := f.createIn(t, state.Pending)
			for name, dead := range f.deadLeases(t) {
				got, err := f.store.TaskClaim(f.ctx, &store.TaskClaimParams{Lease: dead.lease, Now: dead.now, Limit: 10})
				require.ErrorIs(t, err, store.ErrLeaseLost, name)
				require.Empty(t, got, name)
			}
			requireTask(t, task, f.task(t, task.ID))
		})

		// Each claimer has a store of its own on the one database, as
		// coordinators do: separate connections and transactions.
		t.Run("ConcurrentClaimsNeverShareATask", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			const claimers, tasks, batch = 6, 60, 3
			want := make([]string, tasks)
			for i := range want {
				want[i] = f.createIn(t, state.Pending).ID
			}
			leases := make([]*store.Lease, claimers)
			for i := range leases {
				leases[i] = f.acquire(t, fmt.Sprintf("c%d", i))
			}
			now := f.now()

			stores := f.stores(t, claimers)
			got := make([][]*store.Task, claimers)
			errs := make([]error, claimers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, l := range leases {
				wg.Go(func() {
					<-start
					for {
						claimed, err := stores[i].TaskClaim(f.ctx, &store.TaskClaimParams{Lease: l, Now: now, Limit: batch})
						if err != nil {
							errs[i] = fmt.Errorf("claimer %d: %w", i, err)
							return
						}
						if len(claimed) == 0 {
							return
						}
						if len(claimed) > batch {
							errs[i] = fmt.Errorf("claimer %d: %d tasks over a limit of %d", i, len(claimed), batch)
							return
						}
						got[i] = append(got[i], claimed...)
					}
				})
			}
			close(start)
			wg.Wait()
			require.NoError(t, errors.Join(errs...))

			var all []string
			for i, claimed := range got {
				for _, task := range claimed {
					require.Equal(t, leases[i].Token, task.OwnerToken, "claimed by %d", i)
					require.Equal(t, leases[i].Token, f.task(t, task.ID).OwnerToken, "stored owner of %s", task.ID)
					all = append(all, task.ID)
				}
			}
			slices.Sort(all)
			require.Equal(t, want, all, "every task claimed exactly once")
		})
	})
}

func (s *suite) taskAdvanceWithLease(t *testing.T) {
	t.Run("TaskAdvanceWithLease", func(t *testing.T) {
		t.Parallel()

		t.Run("OwnerWithLiveLeaseAdvances", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a", "b")
			l := f.acquire(t, "a")
			f.claim(t, l, f.now(), 0)

			at := l.Expires.Add(-time.Nanosecond)
			trs := f.advance(t, &store.TaskAdvanceParams{
				TaskID: task.ID, Lease: l, At: at,
				Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps: []*store.StepChange{startStep(steps[0])},
			})
			require.Len(t, trs, 2)
			got := f.task(t, task.ID)
			require.Equal(t, state.InProgress, got.State)
			require.Equal(t, l.Token, got.OwnerToken)
			require.Equal(t, state.InProgress, f.steps(t, task.ID)[0].State)
			require.Len(t, f.transitions(t, task.ID), 2)
		})

		t.Run("RefusedAndWritesNothing", func(t *testing.T) {
			t.Parallel()
			cases := map[string]func(t *testing.T, f *fixture, task *store.Task) (claimed *store.Task, p *store.TaskAdvanceParams){
				"owned by another lease": func(t *testing.T, f *fixture, task *store.Task) (*store.Task, *store.TaskAdvanceParams) {
					owner, other := f.acquire(t, "a"), f.acquire(t, "b")
					claimed := f.claim(t, owner, f.now(), 0)
					return claimed[0], &store.TaskAdvanceParams{Lease: other, At: f.now()}
				},
				"owned by no lease": func(t *testing.T, f *fixture, task *store.Task) (*store.Task, *store.TaskAdvanceParams) {
					return task, &store.TaskAdvanceParams{Lease: f.acquire(t, "a"), At: f.now()}
				},
				"lease expired": func(t *testing.T, f *fixture, task *store.Task) (*store.Task, *store.TaskAdvanceParams) {
					l := f.acquireAt(t, "a", f.now(), time.Minute)
					claimed := f.claim(t, l, f.now(), 0)
					return claimed[0], &store.TaskAdvanceParams{Lease: l, At: l.Expires.Add(time.Nanosecond)}
				},
				"lease replaced": func(t *testing.T, f *fixture, task *store.Task) (*store.Task, *store.TaskAdvanceParams) {
					l := f.acquire(t, "a")
					claimed := f.claim(t, l, f.now(), 0)
					f.acquire(t, "a") // a restart; it has not claimed the task yet
					return claimed[0], &store.TaskAdvanceParams{Lease: l, At: f.now()}
				},
				"task taken over": func(t *testing.T, f *fixture, task *store.Task) (*store.Task, *store.TaskAdvanceParams) {
					a := f.acquireAt(t, "a", f.now(), time.Minute)
					b := f.acquire(t, "b")
					f.claim(t, a, f.now(), 0)
					claimed := f.claim(t, b, a.Expires.Add(time.Nanosecond), 0)
					// a's clock lags: it still thinks its lease is live.
					return claimed[0], &store.TaskAdvanceParams{Lease: a, At: a.Expires.Add(-time.Nanosecond)}
				},
			}
			for name, prepare := range cases {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					f := s.setup(t)
					task, steps := f.createTask(t, "a", "b")
					claimed, p := prepare(t, f, task)
					p.TaskID = task.ID
					p.Task = &store.TaskChange{From: state.Pending, To: state.InProgress}
					p.Steps = []*store.StepChange{startStep(steps[0])}
					_, err := f.store.TaskAdvance(f.ctx, p)
					require.ErrorIs(t, err, store.ErrLeaseLost)
					require.Contains(t, err.Error(), task.ID, "the error names the task")
					f.requireUntouched(t, claimed, steps)

					// A step change alone, or no change at all, is fenced
					// the same way.
					for _, only := range []*store.TaskAdvanceParams{
						{TaskID: task.ID, Lease: p.Lease, At: p.At, Steps: p.Steps},
						{TaskID: task.ID, Lease: p.Lease, At: p.At},
					} {
						_, err = f.store.TaskAdvance(f.ctx, only)
						require.ErrorIs(t, err, store.ErrLeaseLost)
					}
					f.requireUntouched(t, claimed, steps)
				})
			}
		})

		t.Run("NewOwnerAdvancesAfterTakeover", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			a := f.acquireAt(t, "a", f.now(), time.Minute)
			b := f.acquireAt(t, "b", f.now(), leaseTTL)
			f.claim(t, a, f.now(), 0)
			at := a.Expires.Add(time.Nanosecond)
			f.claim(t, b, at, 0)
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Lease: b, At: at, Steps: []*store.StepChange{startStep(steps[0])}})
			require.Equal(t, state.InProgress, f.steps(t, task.ID)[0].State)
		})

		t.Run("WithoutLeaseIsUnfenced", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			l := f.acquire(t, "a")
			f.claim(t, l, f.now(), 0)
			f.advance(t, &store.TaskAdvanceParams{
				TaskID: task.ID, At: f.now(),
				Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps: []*store.StepChange{startStep(steps[0])},
			})
			got := f.task(t, task.ID)
			require.Equal(t, state.InProgress, got.State)
			require.Equal(t, l.Token, got.OwnerToken, "an unfenced write leaves the owner alone")
		})

		t.Run("RefusalsDoNotSpoilConcurrentWrites", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			const each = 20
			a, b := f.acquire(t, "a"), f.acquire(t, "b")
			type job struct {
				task  *store.Task
				steps []*store.Step
				mine  bool
				err   error
			}
			var jobs []*job
			for i := range 2 * each {
				created, steps := f.createTask(t, "x")
				owner := b
				if i%2 == 0 {
					owner = a
				}
				claimed := f.claim(t, owner, f.now(), 1)
				requireTasks(t, []*store.Task{owned(created, owner)}, claimed)
				jobs = append(jobs, &job{task: claimed[0], steps: steps, mine: owner == a})
			}

			// Lease a advances every task at once, so a driver that
			// batches mixes its own tasks and b's in one transaction.
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, j := range jobs {
				wg.Go(func() {
					<-start
					_, j.err = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
						TaskID: j.task.ID, Lease: a, At: f.now(),
						Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
						Steps: []*store.StepChange{startStep(j.steps[0])},
					})
				})
			}
			close(start)
			wg.Wait()

			for _, j := range jobs {
				if !j.mine {
					require.ErrorIs(t, j.err, store.ErrLeaseLost, j.task.ID)
					f.requireUntouched(t, j.task, j.steps)
					continue
				}
				require.NoError(t, j.err, j.task.ID)
				require.Equal(t, state.InProgress, f.task(t, j.task.ID).State)
				require.Len(t, f.transitions(t, j.task.ID), 2)
			}
		})
	})
}

func (s *suite) taskCreateWithOwner(t *testing.T) {
	t.Run("TaskCreateWithOwner", func(t *testing.T) {
		t.Parallel()

		t.Run("StoresOwnerToken", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			a := f.acquireAt(t, "a", f.now(), time.Minute)
			b := f.acquire(t, "b")
			p := f.taskParams("linear", "only")
			p.Task.OwnerToken = a.Token
			created := f.create(t, p)
			requireTask(t, p.Task, created)
			require.Equal(t, a.Token, created.OwnerToken)
			requireTask(t, p.Task, f.task(t, p.Task.ID))
			active, err := f.store.TaskListActive(f.ctx, &store.TaskListActiveParams{})
			require.NoError(t, err)
			requireTasks(t, []*store.Task{p.Task}, active)
			listed, err := f.store.TaskList(f.ctx, &store.TaskListParams{})
			require.NoError(t, err)
			requireTasks(t, []*store.Task{p.Task}, listed)

			// Owned from the start: a can advance it with no claim, and no
			// one else can take it while a is live.
			f.advance(t, &store.TaskAdvanceParams{TaskID: p.Task.ID, Lease: a, At: f.now(),
				Steps: []*store.StepChange{startStep(p.Steps[0])}})
			require.Empty(t, f.claim(t, b, f.now(), 0))
			require.Len(t, f.claim(t, b, a.Expires.Add(time.Nanosecond), 0), 1)
		})
	})
}

// stores opens n more stores on the fixture's database.
func (f *fixture) stores(t *testing.T, n int) []store.Store {
	t.Helper()
	out := make([]store.Store, n)
	for i := range out {
		out[i] = f.open(t)
	}
	return out
}

// deadLease is a lease that is not live at now.
type deadLease struct {
	lease *store.Lease
	now   time.Time
}

// deadLeases makes a lease of each kind that may no longer write:
// expired, replaced by a restart of its coordinator, and never issued.
func (f *fixture) deadLeases(t *testing.T) map[string]deadLease {
	t.Helper()
	expiring := f.acquireAt(t, "expiring", f.now(), time.Minute)
	replaced := f.acquire(t, "restarting")
	f.acquire(t, "restarting")
	return map[string]deadLease{
		"expired":  {expiring, expiring.Expires},
		"replaced": {replaced, f.now()},
		"unknown":  {&store.Lease{CoordinatorID: "ghost", Token: replaced.Token + 1000}, f.now()},
	}
}

// acquire starts a lease for id at f.now() that outlasts the test.
func (f *fixture) acquire(t *testing.T, id string) *store.Lease {
	t.Helper()
	return f.acquireAt(t, id, f.now(), leaseTTL)
}

func (f *fixture) acquireAt(t *testing.T, id string, now time.Time, ttl time.Duration) *store.Lease {
	t.Helper()
	l, err := f.store.LeaseAcquire(f.ctx, &store.LeaseAcquireParams{CoordinatorID: id, TTL: ttl, Now: now})
	require.NoError(t, err)
	return l
}

// claim runs TaskClaim and checks what every claim promises: within the
// limit (0 meaning the driver's cap), oldest first, owned by the lease.
func (f *fixture) claim(t *testing.T, l *store.Lease, now time.Time, limit int) []*store.Task {
	t.Helper()
	got, err := f.store.TaskClaim(f.ctx, &store.TaskClaimParams{Lease: l, Now: now, Limit: limit})
	require.NoError(t, err)
	if limit > 0 {
		require.LessOrEqual(t, len(got), limit)
	}
	require.True(t, slices.IsSortedFunc(got, func(a, b *store.Task) int {
		return strings.Compare(a.ID, b.ID)
	}), "claimed tasks oldest first: %v", taskIDs(got))
	for _, task := range got {
		require.Equal(t, l.Token, task.OwnerToken, "owner of claimed task %s", task.ID)
	}
	return got
}

func (f *fixture) leaseList(t *testing.T, now time.Time) []*store.Lease {
	t.Helper()
	leases, err := f.store.LeaseList(f.ctx, now)
	require.NoError(t, err)
	return leases
}

// createIn stores a stepless task in the given state.
func (f *fixture) createIn(t *testing.T, st state.State) *store.Task {
	t.Helper()
	p := f.taskParams("linear")
	p.Task.State = st
	return f.create(t, p)
}

// owned is task as it reads once l has claimed it: only the owner changes.
func owned(task *store.Task, l *store.Lease) *store.Task {
	out := *task
	out.OwnerToken = l.Token
	return &out
}

func requireTasks(t *testing.T, want, got []*store.Task) {
	t.Helper()
	require.Equal(t, taskIDs(want), taskIDs(got))
	for i := range want {
		requireTask(t, want[i], got[i])
	}
}

func requireLeases(t *testing.T, want, got []*store.Lease) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].CoordinatorID, got[i].CoordinatorID, "lease %d", i)
		require.Equal(t, want[i].Token, got[i].Token, "lease %d of %s", i, want[i].CoordinatorID)
		requireTimeEqual(t, want[i].Expires, got[i].Expires, "Expires of "+want[i].CoordinatorID)
		require.Equal(t, want[i].Address, got[i].Address, "Address of %s", want[i].CoordinatorID)
	}
}
