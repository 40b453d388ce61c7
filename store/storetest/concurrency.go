package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
)

func (s *suite) concurrency(t *testing.T) {
	t.Run("Concurrency", func(t *testing.T) {
		t.Parallel()

		t.Run("ManyTasksCreateAndAdvance", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			const workers = 50
			steps := []string{"fetch", "process", "report"}
			ids := make([]string, workers)
			errs := make([]error, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					ids[w], errs[w] = f.runTask(steps)
				})
			}
			wg.Wait()
			require.NoError(t, errors.Join(errs...))

			// Every write of every worker is visible afterwards.
			for _, id := range ids {
				task := f.task(t, id)
				require.Equal(t, state.Complete, task.State, id)
				require.False(t, task.CompletedAt.IsZero(), id)
				got := f.steps(t, id)
				require.Len(t, got, len(steps))
				for _, st := range got {
					require.Equal(t, state.Complete, st.State, "%s %s", id, st.Name)
					require.Equal(t, 1, st.Attempts, "%s %s", id, st.Name)
					require.JSONEq(t, `{"ok":true}`, string(st.Results))
				}
				trs := f.transitions(t, id)
				require.Len(t, trs, 2+2*len(steps), id)
				requireSeqIncreasing(t, trs, 0)
			}
			require.Len(t, f.list(t, &store.TaskListParams{State: state.Complete}), workers)
			require.Empty(t, f.active(t, &store.TaskListActiveParams{}))
		})

		// A snapshot taken while tasks advance shows each task and step in
		// the state its own last transition in the snapshot left it, so a
		// reader following on from that transition misses nothing.
		t.Run("SnapshotsAgreeWithTheirTransitions", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			const tasks = 8
			names := []string{"a", "b", "c", "d"}
			params := make([]*store.TaskCreateParams, tasks)
			for i := range params {
				params[i] = f.taskParams("linear", names...)
				f.create(t, params[i])
			}
			done := make(chan struct{})
			errs := make([]error, tasks)
			var wg sync.WaitGroup
			for i, p := range params {
				wg.Go(func() { errs[i] = f.walkTask(p) })
			}
			go func() { wg.Wait(); close(done) }()

			snapshots := 0
			for finished := false; !finished; {
				select {
				case <-done:
					finished = true // one more round sees the final states
				default:
				}
				for _, p := range params {
					snap, err := f.store.TaskSnapshot(f.ctx, p.Task.ID)
					require.NoError(t, err)
					requireSnapshotAgrees(t, snap)
					snapshots++
				}
			}
			require.NoError(t, errors.Join(errs...))
			t.Logf("%d snapshots", snapshots)

			for _, p := range params {
				snap, err := f.store.TaskSnapshot(f.ctx, p.Task.ID)
				require.NoError(t, err)
				requireTask(t, f.task(t, p.Task.ID), snap.Task)
				requireSteps(t, f.steps(t, p.Task.ID), snap.Steps)
				requireTransitions(t, f.transitions(t, p.Task.ID), snap.Transitions)
				require.Equal(t, state.Complete, snap.Task.State)
			}
			_, err := f.store.TaskSnapshot(f.ctx, newID())
			require.ErrorIs(t, err, store.ErrNotFound)
		})

		t.Run("ConflictsDoNotSpoilConcurrentWrites", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			const good, bad = 40, 20
			type job struct {
				task  *store.Task
				steps []*store.Step
				bad   bool
				err   error
			}
			jobs := make([]*job, good+bad)
			for i := range jobs {
				task, steps := f.createTask(t, "a", "b")
				jobs[i] = &job{task: task, steps: steps, bad: i%3 == 2}
			}

			// All requests start together so a driver that batches puts good
			// and stale ones in the same transaction.
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, j := range jobs {
				wg.Go(func() {
					change := startStep(j.steps[1])
					if j.bad {
						change.ExpectAttempts = 5 // stale
					}
					<-start
					_, j.err = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
						TaskID: j.task.ID,
						Task:   &store.TaskChange{From: state.Pending, To: state.InProgress},
						Steps:  []*store.StepChange{startStep(j.steps[0]), change},
						At:     f.now(),
					})
				})
			}
			close(start)
			wg.Wait()

			for _, j := range jobs {
				if j.bad {
					require.ErrorIs(t, j.err, store.ErrConflict, j.task.ID)
					f.requireUntouched(t, j.task, j.steps)
					continue
				}
				require.NoError(t, j.err, j.task.ID)
				require.Equal(t, state.InProgress, f.task(t, j.task.ID).State)
				for _, st := range f.steps(t, j.task.ID) {
					require.Equal(t, state.InProgress, st.State)
				}
				require.Len(t, f.transitions(t, j.task.ID), 3)
			}
		})

		// Writes that arrive while a batch is being committed are
		// committed together in the next one: one commit, not one each.
		t.Run("QueuedWritesShareOneCommit", func(t *testing.T) {
			t.Parallel()
			f, st, hold := s.setupHeld(t)
			const queued = 20
			// The first write is taken and held; the rest queue behind it.
			before, release, first := f.holdBatch(t, st, hold)
			errs := make([]error, queued)
			var wg sync.WaitGroup
			for i := range queued {
				wg.Go(func() {
					_, _, errs[i] = f.store.TaskCreate(f.ctx, f.taskParams("linear", "a"))
				})
			}
			waitStats(t, st, "every later write queued", func(now groupcommit.Stats) bool { return now.Queued == queued })
			release()
			require.NoError(t, <-first)
			wg.Wait()
			require.NoError(t, errors.Join(errs...))

			after := st.Stats()
			require.Equal(t, before.Requests+queued+1, after.Requests)
			require.Equal(t, before.Commits+2, after.Commits, "the held write, then every queued one in one commit")
			require.Len(t, f.list(t, &store.TaskListParams{Namespace: f.ns}), queued+1)
		})

		// Writes refused inside a batch (stale preconditions first, in the
		// middle and last, a row the database rejects) fail alone: the
		// rest of the batch commits, in the same one commit.
		t.Run("RefusedWritesDoNotSpoilTheirBatch", func(t *testing.T) {
			t.Parallel()
			f, st, hold := s.setupHeld(t)
			good, goodSteps := f.createTask(t, "a")
			victim, victimSteps := f.createTask(t, "a")
			fresh := f.taskParams("linear", "a")
			dupe := f.taskParams("linear", "a", "a") // two steps with one name
			start := func(task *store.Task, step *store.Step, expect int) *store.TaskAdvanceParams {
				change := startStep(step)
				change.ExpectAttempts, change.Attempts = expect, expect+1
				return &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(),
					Task: &store.TaskChange{From: state.Pending, To: state.InProgress}, Steps: []*store.StepChange{change}}
			}
			writes := []func() error{
				func() error { _, err := f.store.TaskAdvance(f.ctx, start(victim, victimSteps[0], 3)); return err },
				func() error { _, err := f.store.TaskAdvance(f.ctx, start(good, goodSteps[0], 0)); return err },
				func() error { _, err := f.store.TaskAdvance(f.ctx, start(victim, victimSteps[0], 7)); return err },
				func() error { _, _, err := f.store.TaskCreate(f.ctx, fresh); return err },
				func() error { _, _, err := f.store.TaskCreate(f.ctx, dupe); return err },
			}
			before, release, held := f.holdBatch(t, st, hold)
			// Queued one at a time, so the batch holds them in this order.
			errs := make([]chan error, len(writes))
			for i, write := range writes {
				errs[i] = make(chan error, 1)
				go func() { errs[i] <- write() }()
				waitStats(t, st, fmt.Sprintf("write %d queued", i), func(now groupcommit.Stats) bool { return now.Queued == int64(i+1) })
			}
			release()
			require.NoError(t, <-held)

			require.ErrorIs(t, <-errs[0], store.ErrConflict, "stale, first in the batch")
			require.NoError(t, <-errs[1])
			require.ErrorIs(t, <-errs[2], store.ErrConflict, "stale, between good ones")
			require.NoError(t, <-errs[3])
			dupeErr := <-errs[4]
			require.Error(t, dupeErr, "a rejected row fails its own write")
			require.NotErrorIs(t, dupeErr, store.ErrUnavailable)
			after := st.Stats()
			require.Equal(t, before.Commits+2, after.Commits, "the held write, then all the others in one commit")
			require.Equal(t, before.Requests+int64(len(writes))+1, after.Requests)

			require.Equal(t, state.InProgress, f.task(t, good.ID).State)
			f.requireUntouched(t, victim, victimSteps)
			f.task(t, fresh.Task.ID)
			_, err := f.store.TaskGet(f.ctx, dupe.Task.ID)
			require.ErrorIs(t, err, store.ErrNotFound)
		})

		// Advances of many tasks in one batch, several for one task among
		// them, commit as if applied one by one in queue order: every
		// change stored, every transition returned with the seq it was
		// stored under, and each task's history in the order its changes
		// were queued.
		t.Run("AdvancesInOneBatchKeepTheirOrder", func(t *testing.T) {
			t.Parallel()
			f, st, hold := s.setupHeld(t)
			const tasks = 6
			ids := make([]string, tasks)
			steps := make([][]*store.Step, tasks)
			for i := range tasks {
				task, ss := f.createTask(t, "a", "b")
				ids[i], steps[i] = task.ID, ss
			}
			at := f.now()
			// Per task, in queue order: start the task and a; complete a
			// and start b; complete b and the task. Even tasks also fail
			// b instead, leaving the task in error.
			var writes []*store.TaskAdvanceParams
			for i := range tasks {
				a := steps[i][0]
				writes = append(writes, &store.TaskAdvanceParams{TaskID: ids[i], At: at,
					Task:  &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "started"},
					Steps: []*store.StepChange{startStep(a)}})
			}
			for i := range tasks {
				a, b := steps[i][0], steps[i][1]
				writes = append(writes, &store.TaskAdvanceParams{TaskID: ids[i], At: at,
					Steps: []*store.StepChange{completeStep(a, 1, fmt.Sprintf(`{"task":%d}`, i)), startStep(b)}})
			}
			for i := range tasks {
				b := steps[i][1]
				last := &store.TaskAdvanceParams{TaskID: ids[i], At: at, Release: true,
					Steps: []*store.StepChange{completeStep(b, 1, `{"b":true}`)},
					Task:  &store.TaskChange{From: state.InProgress, To: state.Complete, Reason: "done"}}
				if i%2 == 0 {
					last.Steps = []*store.StepChange{{StepID: b.ID, StepName: b.Name, From: state.InProgress, To: state.Error,
						ExpectAttempts: 1, Attempts: 1, Reason: "failed",
						Error: &store.StepError{Message: "boom", Class: "Boom", Retryable: false}}}
					last.Task = &store.TaskChange{From: state.InProgress, To: state.Error, Reason: "failed"}
				}
				writes = append(writes, last)
			}

			before, release, held := f.holdBatch(t, st, hold)
			type result struct {
				trs []*store.Transition
				err error
			}
			results := make([]chan result, len(writes))
			for i, w := range writes {
				results[i] = make(chan result, 1)
				go func() {
					trs, err := f.store.TaskAdvance(f.ctx, w)
					results[i] <- result{trs, err}
				}()
				waitStats(t, st, fmt.Sprintf("write %d queued", i), func(now groupcommit.Stats) bool { return now.Queued == int64(i+1) })
			}
			release()
			require.NoError(t, <-held)
			returned := map[string][]*store.Transition{}
			for i := range writes {
				r := <-results[i]
				require.NoError(t, r.err, "write %d", i)
				for _, tr := range r.trs {
					require.NotZero(t, tr.Seq, "write %d: transition %s→%s has its seq", i, tr.From, tr.To)
				}
				returned[writes[i].TaskID] = append(returned[writes[i].TaskID], r.trs...)
			}
			require.Equal(t, before.Commits+2, st.Stats().Commits, "the held write, then every advance in one commit")

			for i, id := range ids {
				stored := f.transitions(t, id)
				require.Len(t, stored, 6, "task %d", i)
				var last int64
				for k, tr := range stored {
					require.Greater(t, tr.Seq, last, "task %d: history in queue order", i)
					last = tr.Seq
					require.Equal(t, returned[id][k].Seq, tr.Seq, "task %d transition %d", i, k)
					require.Equal(t, returned[id][k].To, tr.To, "task %d transition %d", i, k)
					require.Equal(t, returned[id][k].StepName, tr.StepName, "task %d transition %d", i, k)
				}
				got := f.steps(t, id)
				require.Equal(t, state.Complete, got[0].State)
				require.JSONEq(t, fmt.Sprintf(`{"task":%d}`, i), string(got[0].Results))
				task := f.task(t, id)
				if i%2 == 0 {
					require.Equal(t, state.Error, task.State)
					require.Equal(t, state.Error, got[1].State)
					require.NotNil(t, got[1].Error)
					require.Equal(t, "boom", got[1].Error.Message)
				} else {
					require.Equal(t, state.Complete, task.State)
					require.Equal(t, state.Complete, got[1].State)
					require.Nil(t, got[1].Error)
				}
			}
		})

		// Creates queued together are stored as given, each with its own
		// steps, dependencies, bypassed steps and initial transitions in
		// order (a driver may insert them with one statement); a create
		// whose identity key a task holds, stored before or created earlier
		// in the same batch, answers with that task and stores nothing.
		t.Run("CreatesInOneBatch", func(t *testing.T) {
			t.Parallel()
			f, st, hold := s.setupHeld(t)
			stored := f.create(t, f.taskParams("linear", "a"))
			plain := func(i int) *store.TaskCreateParams {
				names := []string{"a", "b", "c", "d"}[:1+i%4]
				p := f.taskParams("linear", names...)
				if i%3 == 1 {
					p.Task.BypassSteps = names[:1]
				}
				at := p.Task.CreatedAt
				p.Task.State = state.InProgress
				p.Steps[0].State, p.Steps[0].Attempts = state.InProgress, 1
				p.Transitions = []*store.Transition{
					{TaskID: p.Task.ID, From: state.Pending, To: state.InProgress, At: at, Reason: "started"},
					{TaskID: p.Task.ID, StepID: p.Steps[0].ID, StepName: p.Steps[0].Name, From: state.Pending,
						To: state.InProgress, At: at, Reason: "dispatched", Attempt: 1},
				}
				return p
			}
			type result struct {
				task    *store.Task
				created bool
				err     error
			}
			inOneBatch := func(creates []*store.TaskCreateParams) []result {
				before, release, held := f.holdBatch(t, st, hold)
				results := make([]chan result, len(creates))
				for i, p := range creates {
					results[i] = make(chan result, 1)
					go func() {
						task, created, err := f.store.TaskCreate(f.ctx, p)
						results[i] <- result{task, created, err}
					}()
					waitStats(t, st, fmt.Sprintf("create %d queued", i), func(now groupcommit.Stats) bool { return now.Queued == int64(i+1) })
				}
				release()
				require.NoError(t, <-held)
				out := make([]result, len(creates))
				for i := range creates {
					out[i] = <-results[i]
					require.NoError(t, out[i].err, "create %d", i)
				}
				require.Equal(t, before.Commits+2, st.Stats().Commits, "the held write, then every create in one commit")
				return out
			}
			requireStored := func(p *store.TaskCreateParams, got *store.Task) {
				t.Helper()
				requireTask(t, p.Task, got)
				requireTask(t, p.Task, f.task(t, p.Task.ID))
				requireSteps(t, p.Steps, f.steps(t, p.Task.ID))
				trs := f.transitions(t, p.Task.ID)
				requireTransitions(t, p.Transitions, trs)
				for k, tr := range trs {
					require.Equal(t, p.Transitions[k].Seq, tr.Seq, "task %s transition %d: its seq as returned", p.Task.ID, k)
				}
				requireSeqIncreasing(t, trs, 0)
			}

			var creates []*store.TaskCreateParams
			for i := range 6 {
				creates = append(creates, plain(i))
			}
			for i, r := range inOneBatch(creates) {
				require.True(t, r.created, "create %d", i)
				requireStored(creates[i], r.task)
			}

			creates = []*store.TaskCreateParams{plain(0), plain(1), plain(2), plain(3)}
			takenBefore, takenNow := creates[1], creates[3]
			takenBefore.Task.IdentityKey = stored.IdentityKey
			takenNow.Task.IdentityKey = creates[0].Task.IdentityKey
			got := inOneBatch(creates)
			for _, i := range []int{0, 2} {
				require.True(t, got[i].created, "create %d", i)
				requireStored(creates[i], got[i].task)
			}
			require.False(t, got[1].created)
			require.Equal(t, stored.ID, got[1].task.ID, "the task stored before under the identity key")
			require.False(t, got[3].created)
			require.Equal(t, creates[0].Task.ID, got[3].task.ID, "the task created earlier in the batch under the identity key")
			for _, p := range []*store.TaskCreateParams{takenBefore, takenNow} {
				_, err := f.store.TaskGet(f.ctx, p.Task.ID)
				require.ErrorIs(t, err, store.ErrNotFound, "a create answered with another task stores nothing")
				require.Empty(t, f.transitions(t, p.Task.ID))
			}
		})

		// A caller whose context ends while its write waits for the
		// committer gets its error and nothing is written; one whose write
		// the committer already took gets the real outcome.
		t.Run("ContextWithdrawsOnlyQueuedWrites", func(t *testing.T) {
			t.Parallel()
			f, st, hold := s.setupHeld(t)
			before := st.Stats()
			release := hold.HoldWrites(t)

			takenCtx, cancelTaken := context.WithCancel(f.ctx)
			taken := f.taskParams("linear", "a")
			takenErr := make(chan error, 1)
			go func() {
				_, _, err := f.store.TaskCreate(takenCtx, taken)
				takenErr <- err
			}()
			waitStats(t, st, "the first write taken and held", func(now groupcommit.Stats) bool {
				return now.Taken == before.Taken+1 && now.Queued == 0
			})

			waitingCtx, cancelWaiting := context.WithCancel(f.ctx)
			withdrawn := f.taskParams("linear", "a")
			waitingErr := make(chan error, 1)
			go func() {
				_, _, err := f.store.TaskCreate(waitingCtx, withdrawn)
				waitingErr <- err
			}()
			waitStats(t, st, "the second write queued", func(now groupcommit.Stats) bool { return now.Queued == 1 })
			cancelWaiting()
			require.ErrorIs(t, <-waitingErr, context.Canceled)

			cancelTaken()
			release()
			require.NoError(t, <-takenErr, "a taken write runs to its real outcome")
			f.task(t, taken.Task.ID)
			_, err := f.store.TaskGet(f.ctx, withdrawn.Task.ID)
			require.ErrorIs(t, err, store.ErrNotFound)
			require.Equal(t, before.Taken+1, st.Stats().Taken, "the withdrawn write never reached the committer")
		})

		t.Run("OneWinnerPerPrecondition", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "contended")
			// Ten dispatchers race to start the same attempt; the
			// precondition lets exactly one through.
			const racers = 10
			errs := make([]error, racers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range racers {
				wg.Go(func() {
					<-start
					_, errs[i] = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
						TaskID: task.ID, Steps: []*store.StepChange{startStep(steps[0])}, At: f.now(),
					})
				})
			}
			close(start)
			wg.Wait()

			won := 0
			for _, err := range errs {
				if err == nil {
					won++
					continue
				}
				require.ErrorIs(t, err, store.ErrConflict)
			}
			require.Equal(t, 1, won)
			require.Equal(t, 1, f.steps(t, task.ID)[0].Attempts)
			require.Len(t, f.transitions(t, task.ID), 1)
		})
	})
}

// setupHeld is setup for cases that hold a batch and watch the committer;
// it skips the test on drivers that cannot.
func (s *suite) setupHeld(t *testing.T) (*fixture, StatsStore, WriteHolder) {
	t.Helper()
	f := s.setup(t)
	st, stats := f.store.(StatsStore)
	hold, holds := f.store.(WriteHolder)
	if !stats || !holds {
		t.Skipf("%T does not implement storetest.StatsStore and storetest.WriteHolder", f.store)
	}
	return f, st, hold
}

// holdBatch holds the store's writes and has one write (a TaskCreate)
// taken by the committer and held, so the writes made next queue behind it
// and go into the next batch together. It returns the committer's counters
// from before, the release, and the held write's outcome.
func (f *fixture) holdBatch(t *testing.T, st StatsStore, hold WriteHolder) (before groupcommit.Stats, release func(), held <-chan error) {
	t.Helper()
	before = st.Stats()
	release = hold.HoldWrites(t)
	outcome := make(chan error, 1)
	go func() {
		_, _, err := f.store.TaskCreate(f.ctx, f.taskParams("linear", "a"))
		outcome <- err
	}()
	waitStats(t, st, "the first write taken and held", func(now groupcommit.Stats) bool {
		return now.Taken == before.Taken+1 && now.Queued == 0
	})
	return before, release, outcome
}

// waitStats waits until the committer's counters satisfy cond.
func waitStats(t *testing.T, st StatsStore, what string, cond func(groupcommit.Stats) bool) {
	t.Helper()
	require.Eventually(t, func() bool { return cond(st.Stats()) }, 30*time.Second, time.Millisecond,
		"waiting for %s: %+v", what, st.Stats())
}

// runTask creates a chained task and walks it to complete, one TaskAdvance
// per step as a coordinator would. It returns errors rather than failing, so
// it can run off the test goroutine.
func (f *fixture) runTask(names []string) (string, error) {
	p := f.taskParams("linear", names...)
	if _, created, err := f.store.TaskCreate(f.ctx, p); err != nil || !created {
		return p.Task.ID, fmt.Errorf("create %s: created=%v: %w", p.Task.ID, created, err)
	}
	return p.Task.ID, f.walkTask(p)
}

// walkTask walks a created chained task to complete, as runTask does.
func (f *fixture) walkTask(p *store.TaskCreateParams) error {
	steps := p.Steps
	advance := func(adv *store.TaskAdvanceParams) error {
		adv.TaskID, adv.At = p.Task.ID, f.now()
		if _, err := f.store.TaskAdvance(f.ctx, adv); err != nil {
			return fmt.Errorf("advance %s: %w", p.Task.ID, err)
		}
		return nil
	}
	if err := advance(&store.TaskAdvanceParams{
		Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
		Steps: []*store.StepChange{startStep(steps[0])},
	}); err != nil {
		return err
	}
	for i, st := range steps {
		adv := &store.TaskAdvanceParams{Steps: []*store.StepChange{completeStep(st, 1, `{"ok":true}`)}}
		if i+1 < len(steps) {
			adv.Steps = append(adv.Steps, startStep(steps[i+1]))
		} else {
			adv.Task = &store.TaskChange{From: state.InProgress, To: state.Complete}
		}
		if err := advance(adv); err != nil {
			return err
		}
	}
	return nil
}

// requireSnapshotAgrees checks that a snapshot's task and steps are in the
// states its transitions last moved them to (pending before any).
func requireSnapshotAgrees(t *testing.T, snap *store.TaskSnapshot) {
	t.Helper()
	taskState := state.Pending
	stepState := map[string]state.State{}
	for _, tr := range snap.Transitions {
		if tr.StepID == "" {
			taskState = tr.To
		} else {
			stepState[tr.StepID] = tr.To
		}
	}
	require.Equal(t, taskState, snap.Task.State, "task %s", snap.Task.ID)
	for _, st := range snap.Steps {
		want, moved := stepState[st.ID]
		if !moved {
			want = state.Pending
		}
		require.Equal(t, want, st.State, "task %s step %s", snap.Task.ID, st.Name)
	}
}
