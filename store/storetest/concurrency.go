package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
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

// runTask creates a chained task and walks it to complete, one TaskAdvance
// per step as a coordinator would. It returns errors rather than failing, so
// it can run off the test goroutine.
func (f *fixture) runTask(names []string) (string, error) {
	p := f.taskParams("linear", names...)
	if _, created, err := f.store.TaskCreate(f.ctx, p); err != nil || !created {
		return p.Task.ID, fmt.Errorf("create %s: created=%v: %w", p.Task.ID, created, err)
	}
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
		return p.Task.ID, err
	}
	for i, st := range steps {
		adv := &store.TaskAdvanceParams{Steps: []*store.StepChange{completeStep(st, 1, `{"ok":true}`)}}
		if i+1 < len(steps) {
			adv.Steps = append(adv.Steps, startStep(steps[i+1]))
		} else {
			adv.Task = &store.TaskChange{From: state.InProgress, To: state.Complete}
		}
		if err := advance(adv); err != nil {
			return p.Task.ID, err
		}
	}
	return p.Task.ID, nil
}
