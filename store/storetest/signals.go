package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
)

// signal builds a signal of the task, received now.
func (f *fixture) signal(taskID, name, payload string) *store.Signal {
	s := &store.Signal{ID: newID(), TaskID: taskID, Name: name, ReceivedAt: f.now()}
	if payload != "" {
		s.Payload = json.RawMessage(payload)
	}
	return s
}

func (f *fixture) signals(t *testing.T, taskID string, pending bool) []*store.Signal {
	t.Helper()
	got, err := f.store.SignalList(f.ctx, &store.SignalListParams{TaskID: taskID, Pending: pending})
	require.NoError(t, err)
	return got
}

func (s *suite) signals(t *testing.T) {
	t.Run("SignalCreate", func(t *testing.T) {
		t.Parallel()

		t.Run("StoresUnconsumedInOrder", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, _ := f.createTask(t, "approve")
			first := f.signal(task.ID, "approved", `{"by":"ana"}`)
			second := f.signal(task.ID, "approved", "")
			require.NoError(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: first}))
			require.NoError(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: second}))
			other, _ := f.createTask(t, "approve")
			require.NoError(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: f.signal(other.ID, "approved", "")}))

			got := f.signals(t, task.ID, true)
			require.Len(t, got, 2)
			require.Equal(t, first.ID, got[0].ID)
			require.Equal(t, "approved", got[0].Name)
			require.JSONEq(t, `{"by":"ana"}`, string(got[0].Payload))
			requireTimeEqual(t, first.ReceivedAt, got[0].ReceivedAt, "ReceivedAt")
			require.False(t, got[0].Consumed())
			require.Nil(t, got[1].Payload, "no payload reads back as none")
		})

		t.Run("RefusesWithoutWriting", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, _ := f.createTask(t, "approve")
			sig := f.signal(task.ID, "approved", `1`)
			require.NoError(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: sig}))
			err := f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: sig})
			require.ErrorIs(t, err, store.ErrConflict, "the same id twice")
			err = f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: f.signal(newID(), "approved", "")})
			require.ErrorIs(t, err, store.ErrNotFound, "an unknown task")
			bad := f.signal(task.ID, "approved", `{`)
			require.Error(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: bad}), "a payload not JSON")
			require.Len(t, f.signals(t, task.ID, false), 1)
		})

		t.Run("IsFenced", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, _ := f.createTask(t, "approve")
			a := f.acquireAt(t, "a", f.now(), time.Minute)
			b := f.acquire(t, "b")
			f.take(t, a, task.ID, f.now())
			f.take(t, b, task.ID, a.Expires)
			err := f.store.SignalCreate(f.ctx, &store.SignalCreateParams{
				Lease: a, At: a.Expires.Add(-time.Nanosecond), Signal: f.signal(task.ID, "approved", ""),
			})
			require.ErrorIs(t, err, store.ErrLeaseLost)
			require.Empty(t, f.signals(t, task.ID, false))
			require.NoError(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Lease: b, At: f.now(), Signal: f.signal(task.ID, "approved", "")}))
			require.Len(t, f.signals(t, task.ID, true), 1)
		})
	})

	t.Run("TaskAdvanceConsumesSignal", func(t *testing.T) {
		t.Parallel()

		t.Run("StoredOnce", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "approve")
			sig := f.signal(task.ID, "approved", `{"ok":true}`)
			require.NoError(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: sig}))
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{startStep(steps[0])}})
			done := completeStep(steps[0], 1, `{"ok":true}`)
			done.Signal = sig
			at := f.now()
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: at, Steps: []*store.StepChange{done}})

			require.Empty(t, f.signals(t, task.ID, true))
			all := f.signals(t, task.ID, false)
			require.Len(t, all, 1)
			require.Equal(t, steps[0].ID, all[0].ConsumedStepID)
			require.Equal(t, 1, all[0].ConsumedAttempt)
			requireTimeEqual(t, at, all[0].ConsumedAt, "ConsumedAt")
		})

		t.Run("ArrivingWhileWaiting", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "approve")
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{startStep(steps[0])}})
			done := completeStep(steps[0], 1, `"yes"`)
			done.Signal = f.signal(task.ID, "approved", `"yes"`)
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{done}})
			all := f.signals(t, task.ID, false)
			require.Len(t, all, 1)
			require.Equal(t, done.Signal.ID, all[0].ID)
			require.Equal(t, steps[0].ID, all[0].ConsumedStepID)
			require.JSONEq(t, `"yes"`, string(all[0].Payload))
		})

		t.Run("NeverTwice", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "first", "second")
			sig := f.signal(task.ID, "approved", "")
			require.NoError(t, f.store.SignalCreate(f.ctx, &store.SignalCreateParams{Signal: sig}))
			start := []*store.StepChange{startStep(steps[0]), startStep(steps[1])}
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: start})
			one := completeStep(steps[0], 1, `null`)
			one.Signal = sig
			f.advance(t, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{one}})

			two := completeStep(steps[1], 1, `null`)
			two.Signal = sig
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{two}})
			require.ErrorIs(t, err, store.ErrConflict)
			require.Equal(t, "in_progress", string(f.stepByName(t, task.ID, "second").State), "the step change is rolled back with it")
			all := f.signals(t, task.ID, false)
			require.Len(t, all, 1)
			require.Equal(t, steps[0].ID, all[0].ConsumedStepID)
		})

		t.Run("RefusesAMoveNotToComplete", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "approve")
			c := startStep(steps[0])
			c.Signal = f.signal(task.ID, "approved", "")
			_, err := f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{TaskID: task.ID, At: f.now(), Steps: []*store.StepChange{c}})
			require.Error(t, err)
			require.Empty(t, f.signals(t, task.ID, false))
		})
	})
}
