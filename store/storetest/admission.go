package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// admission: TaskAdvance admits dispatches under concurrency keys in the
// transaction that writes them; a refused admission writes nothing of the
// change it guards, and a key is free again once its holder has ended.
func (s *suite) admission(t *testing.T) {
	t.Run("Admission", func(t *testing.T) {
		t.Run("TaskKeyAdmitsUpToMaxRunningThenQueuesInOrder", func(t *testing.T) {
			f := s.setup(t)
			key := f.ns + ":customer=7"
			var tasks []*store.Task
			var roots []*store.Step
			for range 3 {
				task, steps := f.createTask(t, "a", "b")
				tasks, roots = append(tasks, task), append(roots, steps[0])
			}
			start := func(i int) *store.TaskAdvanceParams {
				return &store.TaskAdvanceParams{
					TaskID: tasks[i].ID, At: f.now(),
					Task:  &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "first step dispatched"},
					Steps: []*store.StepChange{startStep(roots[i])},
					Admit: &admission.Request{TaskID: tasks[i].ID, Priority: 2, Keys: []admission.KeyClaim{{Key: key, MaxRunning: 1, Strategy: admission.StrategyQueue}}},
				}
			}
			p := start(0)
			require.Len(t, f.advance(t, p), 2)
			require.Empty(t, p.Refused)
			require.Equal(t, state.InProgress, f.task(t, tasks[0].ID).State)

			// The newest asks first, then the second: both wait, the key
			// being full, and neither change is written.
			for _, i := range []int{2, 1} {
				p := start(i)
				require.Empty(t, f.advance(t, p))
				require.Equal(t, []store.Refusal{{Verdict: admission.Verdict{Reason: admission.ReasonConcurrency, Key: key}}}, p.Refused)
				require.Equal(t, state.Pending, f.task(t, tasks[i].ID).State)
				require.Equal(t, state.Pending, f.stepByName(t, tasks[i].ID, "a").State)
				require.Len(t, f.transitions(t, tasks[i].ID), 0)
			}

			// The holder ends: the key is free for the one created first,
			// so the newest still waits, now behind it.
			f.advance(t, &store.TaskAdvanceParams{TaskID: tasks[0].ID, At: f.now(), Release: true,
				Task: &store.TaskChange{From: state.InProgress, To: state.Cancelled, Reason: "cancelled"}})
			p = start(2)
			require.Empty(t, f.advance(t, p))
			require.Equal(t, admission.ReasonPriority, p.Refused[0].Reason)
			p = start(1)
			require.Len(t, f.advance(t, p), 2)
			require.Empty(t, p.Refused)
		})

		t.Run("StepKeyHoldsFromAdmissionUntilTheAttemptEnds", func(t *testing.T) {
			f := s.setup(t)
			key := f.ns + ":handler=charge:account=1"
			t1, s1 := f.createTask(t, "a")
			t2, s2 := f.createTask(t, "a")
			dispatch := func(task *store.Task, st *store.Step, from state.State, attempts int) *store.TaskAdvanceParams {
				c := startStep(st)
				c.From, c.ExpectAttempts, c.Attempts = from, attempts, attempts+1
				c.Admit = &admission.Request{TaskID: task.ID, StepID: st.ID, Attempt: attempts + 1, Priority: 2,
					Keys: []admission.KeyClaim{{Key: key, MaxRunning: 1, Strategy: admission.StrategyQueue}}}
				return &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{c}}
			}
			p := dispatch(t1, s1[0], state.Pending, 0)
			require.Len(t, f.advance(t, p), 1)
			p = dispatch(t2, s2[0], state.Pending, 0)
			require.Empty(t, f.advance(t, p))
			require.Equal(t, admission.ReasonConcurrency, p.Refused[0].Reason)
			require.Equal(t, s2[0].ID, p.Refused[0].StepID)

			// The attempt fails: the step waits for a retry and holds
			// nothing meanwhile, so the other step is admitted.
			f.advance(t, &store.TaskAdvanceParams{TaskID: t1.ID, At: f.now(), Steps: []*store.StepChange{{
				StepID: s1[0].ID, From: state.InProgress, To: state.Error, ExpectAttempts: 1, Attempts: 1,
				Error: &store.StepError{Message: "boom", Retryable: true}, Reason: "failed"}}})
			p = dispatch(t2, s2[0], state.Pending, 0)
			require.Len(t, f.advance(t, p), 1, "refused: %+v", p.Refused)
			p = dispatch(t1, s1[0], state.Error, 1)
			require.Empty(t, f.advance(t, p))
			require.Equal(t, admission.ReasonConcurrency, p.Refused[0].Reason)
			require.Equal(t, state.Error, f.stepByName(t, t1.ID, "a").State)
		})

		t.Run("ConcurrentAdmissionsNeverExceedMaxRunning", func(t *testing.T) {
			f := s.setup(t)
			key := f.ns + ":shared"
			const n, maxRunning = 12, 3
			other := f.open(t) // a second store on the same database: another coordinator
			var wg sync.WaitGroup
			admitted := make(chan string, n)
			for i := range n {
				task, steps := f.createTask(t, "a")
				st := store.Store(f.store)
				if i%2 == 1 {
					st = other
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := &store.TaskAdvanceParams{TaskID: task.ID, At: time.Now(),
						Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
						Steps: []*store.StepChange{startStep(steps[0])},
						Admit: &admission.Request{TaskID: task.ID, Priority: 2, Keys: []admission.KeyClaim{{Key: key, MaxRunning: maxRunning, Strategy: admission.StrategyQueue}}}}
					_, err := st.TaskAdvance(f.ctx, p)
					if err == nil && len(p.Refused) == 0 {
						admitted <- task.ID
					}
				}()
			}
			wg.Wait()
			close(admitted)
			require.Len(t, admitted, maxRunning)
		})

		t.Run("RateLimitTakesTokensAndRefusesWithTheirTime", func(t *testing.T) {
			f := s.setup(t)
			name := "api-" + f.ns
			_, err := f.store.RateLimitSet(f.ctx, &store.RateLimitSetParams{Name: name, Units: 10, Period: time.Second, Burst: 2, At: f.now()})
			require.NoError(t, err)
			at := baseTime.Add(time.Hour)
			dispatch := func(at time.Time) *store.TaskAdvanceParams {
				task, steps := f.createTask(t, "a")
				c := startStep(steps[0])
				c.Admit = &admission.Request{TaskID: task.ID, StepID: steps[0].ID, Attempt: 1, Priority: 2,
					Tokens: []admission.TokenClaim{{Limit: name, Key: "acct-1", Units: 1}}}
				p := &store.TaskAdvanceParams{TaskID: task.ID, At: at, Steps: []*store.StepChange{c}}
				_, err := f.store.TaskAdvance(f.ctx, p)
				require.NoError(t, err)
				return p
			}
			require.Empty(t, dispatch(at).Refused)
			require.Empty(t, dispatch(at).Refused, "the burst")
			p := dispatch(at)
			require.Len(t, p.Refused, 1)
			require.Equal(t, admission.ReasonRateLimit, p.Refused[0].Reason)
			require.Equal(t, name+"[acct-1]", p.Refused[0].Key)
			requireTimeEqual(t, at.Add(100*time.Millisecond), p.Refused[0].RetryAt, "one token at 10/s")
			// A newcomer waits behind it; it has the refilled token.
			later := dispatch(at.Add(100 * time.Millisecond))
			require.Equal(t, admission.ReasonPriority, later.Refused[0].Reason)
			p.At, p.Refused = at.Add(100*time.Millisecond), nil
			_, err = f.store.TaskAdvance(f.ctx, p)
			require.NoError(t, err)
			require.Empty(t, p.Refused, "a token refilled")

			// An unknown limit waits, retried later, rather than failing.
			task, steps := f.createTask(t, "a")
			c := startStep(steps[0])
			c.Admit = &admission.Request{TaskID: task.ID, StepID: steps[0].ID, Attempt: 1, Tokens: []admission.TokenClaim{{Limit: "nope-" + f.ns, Units: 1}}}
			p = &store.TaskAdvanceParams{TaskID: task.ID, At: at, Steps: []*store.StepChange{c}}
			_, err = f.store.TaskAdvance(f.ctx, p)
			require.NoError(t, err)
			require.Equal(t, admission.ReasonRateLimit, p.Refused[0].Reason)
		})

		t.Run("ConcurrentRateAdmissionsNeverExceedTheBurst", func(t *testing.T) {
			f := s.setup(t)
			name := "burst-" + f.ns
			_, err := f.store.RateLimitSet(f.ctx, &store.RateLimitSetParams{Name: name, Units: 1, Period: time.Hour, Burst: 4, At: f.now()})
			require.NoError(t, err)
			other := f.open(t)
			at := time.Now()
			const n = 12
			var wg sync.WaitGroup
			admitted := make(chan string, n)
			for i := range n {
				task, steps := f.createTask(t, "a")
				st := store.Store(f.store)
				if i%2 == 1 {
					st = other
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := startStep(steps[0])
					c.Admit = &admission.Request{TaskID: task.ID, StepID: steps[0].ID, Attempt: 1, Priority: 2,
						Tokens: []admission.TokenClaim{{Limit: name, Units: 1}}}
					p := &store.TaskAdvanceParams{TaskID: task.ID, At: at, Steps: []*store.StepChange{c}}
					if _, err := st.TaskAdvance(f.ctx, p); err == nil && len(p.Refused) == 0 {
						admitted <- task.ID
					}
				}()
			}
			wg.Wait()
			close(admitted)
			require.Len(t, admitted, 4)
		})
	})
}
