package storetest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

func (s *suite) taskAdvance(t *testing.T) {
	t.Run("TaskAdvance", func(t *testing.T) {
		t.Parallel()

		t.Run("AppliesTaskAndStepChanges", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "fetch_user", "fetch_order", "merge")
			at := f.now()
			p := &store.TaskAdvanceParams{
				TaskID: task.ID,
				Task:   &store.TaskChange{From: state.Pending, To: state.InProgress, Reason: "started", Metadata: json.RawMessage(`{"by":"coordinator"}`)},
				Steps:  []*store.StepChange{startStep(steps[0]), startStep(steps[1])},
				At:     at,
			}
			trs := f.advance(t, p)

			want := []*store.Transition{
				{TaskID: task.ID, StepID: steps[0].ID, StepName: "fetch_user", From: state.Pending, To: state.InProgress, At: at, Reason: "dispatched", Attempt: 1},
				{TaskID: task.ID, StepID: steps[1].ID, StepName: "fetch_order", From: state.Pending, To: state.InProgress, At: at, Reason: "dispatched", Attempt: 1},
				{TaskID: task.ID, From: state.Pending, To: state.InProgress, At: at, Reason: "started", Metadata: json.RawMessage(`{"by":"coordinator"}`)},
			}
			requireTransitions(t, want, trs)
			requireSeqIncreasing(t, trs, 0)
			// What TaskAdvance returned is what TransitionList reads back.
			stored := f.transitions(t, task.ID)
			requireTransitions(t, trs, stored)
			for i := range trs {
				require.Equal(t, trs[i].Seq, stored[i].Seq)
			}

			gotTask := f.task(t, task.ID)
			require.Equal(t, state.InProgress, gotTask.State)
			requireTimeEqual(t, at, gotTask.UpdatedAt, "task UpdatedAt")
			requireTimeEqual(t, task.CreatedAt, gotTask.CreatedAt, "task CreatedAt")
			require.True(t, gotTask.CompletedAt.IsZero())

			got := f.steps(t, task.ID)
			for i, st := range got[:2] {
				require.Equal(t, state.InProgress, st.State, st.Name)
				require.Equal(t, 1, st.Attempts, st.Name)
				require.Equal(t, 3, st.MaxAttempts, st.Name)
				requireTimeEqual(t, at, st.UpdatedAt, st.Name+" UpdatedAt")
				require.Equal(t, steps[i].ID, st.ID)
			}
			requireSteps(t, steps[2:], got[2:])
		})

		t.Run("SeqKeepsIncreasingAcrossCalls", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			first := f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Steps: []*store.StepChange{startStep(steps[0])}, At: f.now()})
			second := f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{{
				StepID: steps[0].ID, StepName: "a", From: state.InProgress, To: state.Complete, ExpectAttempts: 1, Attempts: 1,
			}}})
			require.Len(t, first, 1)
			require.Len(t, second, 1)
			require.Greater(t, second[0].Seq, first[0].Seq)
		})

		t.Run("WrongStepStateConflictsAndWritesNothing", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a", "b")
			bad := startStep(steps[1])
			bad.From = state.Error // it is pending
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: task.ID,
				Task:   &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps:  []*store.StepChange{startStep(steps[0]), bad},
				At:     f.now(),
			})
			require.ErrorIs(t, err, store.ErrConflict)
			require.Contains(t, err.Error(), steps[1].ID, "the error names the step")
			f.requireUntouched(t, task, steps)
		})

		// A refusal says what it expected and what it found, so a log
		// tells a stale attempt from a step that moved on.
		t.Run("ConflictSaysWhatItFound", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{
				{StepID: steps[0].ID, StepName: "a", From: state.InProgress, To: state.Complete, ExpectAttempts: 2, Attempts: 2},
			}})
			require.ErrorIs(t, err, store.ErrConflict)
			require.ErrorContains(t, err, "expected in_progress with 2 attempts, found pending with 0")

			_, err = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(),
				Task: &store.TaskChange{From: state.InProgress, To: state.Complete}})
			require.ErrorIs(t, err, store.ErrConflict)
			require.ErrorContains(t, err, "task is pending, not in_progress")
		})

		t.Run("NoChangesWritesNothingButKnowsTheTask", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			trs := f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now()})
			require.Empty(t, trs)
			f.requireUntouched(t, task, steps)

			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: newID(), At: f.now()})
			require.ErrorIs(t, err, store.ErrNotFound)
		})

		t.Run("RecordsStoredStepName", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			change := startStep(steps[0])
			change.StepName = ""
			trs := f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{change}})
			require.Equal(t, "a", trs[0].StepName, "the stored step name fills an empty StepName")
			require.Equal(t, "a", f.transitions(t, task.ID)[0].StepName)
		})

		t.Run("WrongAttemptsConflicts", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			stale := startStep(steps[0])
			stale.ExpectAttempts = 1 // it has 0
			stale.Attempts = 2
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: task.ID,
				Task:   &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps:  []*store.StepChange{stale},
				At:     f.now(),
			})
			require.ErrorIs(t, err, store.ErrConflict)
			f.requireUntouched(t, task, steps)
		})

		t.Run("WrongTaskStateConflicts", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: task.ID,
				Task:   &store.TaskChange{From: state.InProgress, To: state.Complete}, // it is pending
				Steps:  []*store.StepChange{startStep(steps[0])},
				At:     f.now(),
			})
			require.ErrorIs(t, err, store.ErrConflict)
			require.Contains(t, err.Error(), task.ID, "the error names the task")
			f.requireUntouched(t, task, steps)
		})

		t.Run("UnknownTaskOrStepIsNotFound", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: newID(), Task: &store.TaskChange{From: state.Pending, To: state.InProgress}, At: f.now(),
			})
			require.ErrorIs(t, err, store.ErrNotFound)

			ghost := startStep(&store.Step{ID: newID(), Name: "ghost"})
			_, err = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: task.ID, Steps: []*store.StepChange{startStep(steps[0]), ghost}, At: f.now(),
			})
			require.ErrorIs(t, err, store.ErrNotFound)
			f.requireUntouched(t, task, steps)
		})

		t.Run("StepOfAnotherTaskIsNotFound", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			other, otherSteps := f.createTask(t, "a")
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: task.ID, Steps: []*store.StepChange{startStep(otherSteps[0])}, At: f.now(),
			})
			require.ErrorIs(t, err, store.ErrNotFound)
			f.requireUntouched(t, other, otherSteps)
			f.requireUntouched(t, task, steps)
		})

		t.Run("ChainsChangesToOneStep", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "flaky")
			st := steps[0]
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Steps: []*store.StepChange{startStep(st)}, At: f.now()})
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{{
				StepID: st.ID, StepName: st.Name, From: state.InProgress, To: state.Error, ExpectAttempts: 1, Attempts: 1,
				Error: &store.StepError{Message: "timeout", Class: "Timeout", Retryable: true}, NextRetryAt: f.now(),
			}}})

			// Retry: error→pending then pending→in_progress in one call; the
			// second change sees the first one's result.
			at := f.now()
			trs := f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: at, Steps: []*store.StepChange{
				{StepID: st.ID, StepName: st.Name, From: state.Error, To: state.Pending, ExpectAttempts: 1, Attempts: 1, Reason: "retry"},
				{StepID: st.ID, StepName: st.Name, From: state.Pending, To: state.InProgress, ExpectAttempts: 1, Attempts: 2, Reason: "dispatched"},
			}})
			requireTransitions(t, []*store.Transition{
				{TaskID: task.ID, StepID: st.ID, StepName: st.Name, From: state.Error, To: state.Pending, At: at, Reason: "retry", Attempt: 1},
				{TaskID: task.ID, StepID: st.ID, StepName: st.Name, From: state.Pending, To: state.InProgress, At: at, Reason: "dispatched", Attempt: 2},
			}, trs)
			requireSeqIncreasing(t, trs, 0)
			got := f.steps(t, task.ID)[0]
			require.Equal(t, state.InProgress, got.State)
			require.Equal(t, 2, got.Attempts)
			require.Len(t, f.transitions(t, task.ID), 4)
		})

		t.Run("SetsAndClearsStepFields", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "charge")
			st := steps[0]
			step := func() *store.Step { return f.steps(t, task.ID)[0] }
			move := func(c *store.StepChange) {
				t.Helper()
				c.StepID, c.StepName = st.ID, st.Name
				f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Steps: []*store.StepChange{c}, At: f.now()})
			}

			move(&store.StepChange{From: state.Pending, To: state.InProgress, ExpectAttempts: 0, Attempts: 1})
			require.Nil(t, step().Results)
			require.Nil(t, step().Error)

			// Failure: error and retry time set; results still unset.
			retryAt := f.now()
			failure := &store.StepError{Message: "card declined", Class: "Declined", Retryable: true}
			move(&store.StepChange{From: state.InProgress, To: state.Error, ExpectAttempts: 1, Attempts: 1, Error: failure, NextRetryAt: retryAt})
			got := step()
			require.Equal(t, failure, got.Error)
			requireTimeEqual(t, retryAt, got.NextRetryAt, "NextRetryAt")
			require.Nil(t, got.Results)
			require.Equal(t, 3, got.MaxAttempts, "MaxAttempts zero leaves the limit alone")

			// Operator retry: fresh attempts; nil Error keeps the last
			// error, zero NextRetryAt clears the retry time.
			move(&store.StepChange{From: state.Error, To: state.Pending, ExpectAttempts: 1, Attempts: 1, MaxAttempts: 4})
			got = step()
			require.Equal(t, 4, got.MaxAttempts)
			require.Equal(t, failure, got.Error)
			require.True(t, got.NextRetryAt.IsZero())

			// Partial results while still running are kept...
			move(&store.StepChange{From: state.Pending, To: state.InProgress, ExpectAttempts: 1, Attempts: 2, Results: json.RawMessage(`{"progress":50}`)})
			require.JSONEq(t, `{"progress":50}`, string(step().Results))
			require.Equal(t, failure, step().Error)

			// ...completion replaces results and clears the error, even if
			// the change carries one.
			move(&store.StepChange{
				From: state.InProgress, To: state.Complete, ExpectAttempts: 2, Attempts: 2,
				Results: json.RawMessage(`{"charge_id":"ch_1"}`), Error: &store.StepError{Message: "ignored"},
			})
			got = step()
			require.Equal(t, state.Complete, got.State)
			require.JSONEq(t, `{"charge_id":"ch_1"}`, string(got.Results))
			require.Nil(t, got.Error)
			require.Equal(t, 2, got.Attempts)
			require.Equal(t, 4, got.MaxAttempts)

			// A later change without results keeps them.
			move(&store.StepChange{From: state.Complete, To: state.Cancelled, ExpectAttempts: 2, Attempts: 2})
			require.JSONEq(t, `{"charge_id":"ch_1"}`, string(step().Results))
		})

		t.Run("SetsCompletedAtOnComplete", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "only")
			f.advance(t, &store.TaskAdvanceParams{
				TaskID: task.ID, Task: &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps: []*store.StepChange{startStep(steps[0])}, At: f.now(),
			})
			require.True(t, f.task(t, task.ID).CompletedAt.IsZero())

			done := f.now()
			f.advance(t, &store.TaskAdvanceParams{
				TaskID: task.ID, At: done,
				Steps: []*store.StepChange{{StepID: steps[0].ID, StepName: "only", From: state.InProgress, To: state.Complete, ExpectAttempts: 1, Attempts: 1}},
				Task:  &store.TaskChange{From: state.InProgress, To: state.Complete, Reason: "all steps complete"},
			})
			got := f.task(t, task.ID)
			require.Equal(t, state.Complete, got.State)
			requireTimeEqual(t, done, got.CompletedAt, "CompletedAt")
			requireTimeEqual(t, done, got.UpdatedAt, "UpdatedAt")

			// Cancelling a completed task keeps the record of completion.
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Task: &store.TaskChange{From: state.Complete, To: state.Cancelled}, At: f.now()})
			got = f.task(t, task.ID)
			require.Equal(t, state.Cancelled, got.State)
			requireTimeEqual(t, done, got.CompletedAt, "CompletedAt after cancel")
		})

		t.Run("ErrorStateLeavesCompletedAtZero", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, _ := f.createTask(t, "only")
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, Task: &store.TaskChange{From: state.Pending, To: state.Error}, At: f.now()})
			got := f.task(t, task.ID)
			require.Equal(t, state.Error, got.State)
			require.True(t, got.CompletedAt.IsZero())
		})
	})
}

// requireUntouched checks that a task, its steps and its history are exactly
// as created: a refused TaskAdvance must leave no trace.
func (f *fixture) requireUntouched(t *testing.T, task *store.Task, steps []*store.Step) {
	t.Helper()
	requireTask(t, task, f.task(t, task.ID))
	requireSteps(t, steps, f.steps(t, task.ID))
	require.Empty(t, f.transitions(t, task.ID))
}

// completeStep is the success move of a step on its current attempt.
func completeStep(st *store.Step, attempt int, results string) *store.StepChange {
	return &store.StepChange{
		StepID: st.ID, StepName: st.Name, From: state.InProgress, To: state.Complete,
		ExpectAttempts: attempt, Attempts: attempt, Results: json.RawMessage(results), Reason: "succeeded",
	}
}
