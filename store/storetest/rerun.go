package storetest

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// rerun covers the step generation and the StepChange a rerun writes
// (StepChange.Rerun): results and error cleared, generation counted, kept
// across reads, untouched by ordinary changes and by refused ones.
func (s *suite) rerun(t *testing.T) {
	t.Run("Rerun", func(t *testing.T) {
		t.Parallel()

		t.Run("GenerationStartsAtZero", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			p := f.taskParams("linear", "a", "b")
			p.Steps[1].Generation = 7 // not the caller's to choose
			task := f.create(t, p)
			for _, st := range f.steps(t, task.ID) {
				require.Zero(t, st.Generation, st.Name)
			}
		})

		t.Run("ClearsResultsAndErrorAndCountsGenerations", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a", "b")
			a, b := steps[0], steps[1]
			complete := func(st *store.Step, attempts int, results string) *store.StepChange {
				return &store.StepChange{StepID: st.ID, StepName: st.Name, From: state.InProgress, To: state.Complete,
					ExpectAttempts: attempts, Attempts: attempts, Results: json.RawMessage(results), Reason: "done"}
			}
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{startStep(a)}})
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{complete(a, 1, `{"n":1}`)}})
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{
				startStep(b),
				{StepID: b.ID, StepName: "b", From: state.InProgress, To: state.Error, ExpectAttempts: 1, Attempts: 1,
					Error: &store.StepError{Message: "boom", Class: "Permanent"}, Reason: "failed"},
			}})
			// An ordinary change leaves the generation alone.
			for _, st := range f.steps(t, task.ID) {
				require.Zero(t, st.Generation, st.Name)
			}

			at := f.now()
			rerun := func(st *store.Step, from state.State, attempts int) *store.StepChange {
				return &store.StepChange{StepID: st.ID, StepName: st.Name, From: from, To: state.Pending,
					ExpectAttempts: attempts, Attempts: 0, MaxAttempts: 5, Rerun: true,
					// Ignored: a rerun clears them.
					Results: json.RawMessage(`{"stale":true}`), Error: &store.StepError{Message: "stale"},
					Reason: "rerun", Metadata: json.RawMessage(`{"actor":"alice"}`)}
			}
			trs := f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: at,
				Steps: []*store.StepChange{rerun(a, state.Complete, 1), rerun(b, state.Error, 1)},
			})
			require.Len(t, trs, 2)
			require.Equal(t, state.Complete, trs[0].From)
			require.Equal(t, state.Pending, trs[0].To)
			require.Zero(t, trs[0].Attempt)
			require.JSONEq(t, `{"actor":"alice"}`, string(trs[0].Metadata))

			check := func(steps []*store.Step, gen int) {
				t.Helper()
				for _, st := range steps {
					require.Equal(t, state.Pending, st.State, st.Name)
					require.Zero(t, st.Attempts, st.Name)
					require.Equal(t, 5, st.MaxAttempts, st.Name)
					require.Nil(t, st.Results, st.Name)
					require.Nil(t, st.Error, st.Name)
					require.Equal(t, gen, st.Generation, st.Name)
					requireTimeEqual(t, at, st.UpdatedAt, st.Name)
				}
			}
			check(f.steps(t, task.ID), 1)
			snap, err := f.store.TaskSnapshot(f.ctx, task.ID)
			require.NoError(t, err)
			check(snap.Steps, 1)

			// The next run keeps its generation through its attempts; a
			// second rerun counts another.
			a.Attempts = 0
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{startStep(a)}})
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{complete(a, 1, `{"n":2}`)}})
			got := f.stepByName(t, task.ID, "a")
			require.Equal(t, 1, got.Generation)
			require.JSONEq(t, `{"n":2}`, string(got.Results))
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{rerun(a, state.Complete, 1)}})
			require.Equal(t, 2, f.stepByName(t, task.ID, "a").Generation)
			require.Equal(t, 1, f.stepByName(t, task.ID, "b").Generation)
		})

		t.Run("RefusedRerunWritesNothing", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a", "b")
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{startStep(steps[0])}})
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{
				{StepID: steps[1].ID, StepName: "b", From: state.Pending, To: state.Pending, Rerun: true, Reason: "rerun"},
				// a is in progress, not complete: the whole change is refused.
				{StepID: steps[0].ID, StepName: "a", From: state.Complete, To: state.Pending, ExpectAttempts: 1, Rerun: true, Reason: "rerun"},
			}})
			require.True(t, errors.Is(err, store.ErrConflict), "got %v", err)
			for _, st := range f.steps(t, task.ID) {
				require.Zero(t, st.Generation, st.Name)
			}
			require.Len(t, f.transitions(t, task.ID), 1)
		})
	})
}
