package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

func (s *suite) taskCreate(t *testing.T) {
	t.Run("TaskCreate", func(t *testing.T) {
		t.Parallel()

		t.Run("RoundTripsEveryField", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			p := f.taskParams("linear", linearSteps...)
			p.Task.BypassSteps = []string{"validate_output"}
			p.Task.CompletedAt = f.now()
			p.Task.RunAt = f.now().Add(time.Hour)
			p.Task.Priority = 4
			// Fill every optional step field somewhere, so a column the
			// driver forgets to write or read shows up.
			last := p.Steps[len(p.Steps)-1]
			last.Attempts = 2
			last.MaxAttempts = 7
			last.Retryable = false
			last.Skippable = true
			last.State = state.Error
			last.Results = json.RawMessage(`{"partial":true}`)
			last.Error = &store.StepError{Message: "upstream 503", Class: "Unavailable", Retryable: true}
			last.NextRetryAt = f.now()
			p.Steps[0].DependsOn = []string{"a", "b"}

			task, created, err := f.store.TaskCreate(f.ctx, p)
			require.NoError(t, err)
			require.True(t, created)
			requireTask(t, p.Task, task)
			requireTask(t, p.Task, f.task(t, p.Task.ID))
			requireSteps(t, p.Steps, f.steps(t, p.Task.ID))
			require.Empty(t, f.transitions(t, p.Task.ID))
		})

		t.Run("TimesExactToTheNanosecond", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			zone := time.FixedZone("UTC+05:30", 5*3600+30*60)
			created := time.Date(2031, time.December, 31, 23, 59, 59, 999999999, zone)
			updated := time.Date(1999, time.January, 1, 0, 0, 0, 1, time.UTC)
			p := f.taskParams("linear", "only")
			p.Task.CreatedAt, p.Task.UpdatedAt, p.Task.CompletedAt = created, updated, created.Add(1)
			p.Steps[0].UpdatedAt, p.Steps[0].NextRetryAt = created.Add(2), updated.Add(3)
			p.Transitions = []*store.Transition{{From: state.Pending, To: state.Pending, At: created.Add(4), Reason: "created"}}
			f.create(t, p)

			got := f.task(t, p.Task.ID)
			requireTimeEqual(t, created, got.CreatedAt, "task CreatedAt")
			requireTimeEqual(t, updated, got.UpdatedAt, "task UpdatedAt")
			requireTimeEqual(t, created.Add(1), got.CompletedAt, "task CompletedAt")
			require.Equal(t, created.UTC().Format(time.RFC3339Nano), got.CreatedAt.UTC().Format(time.RFC3339Nano))
			st := f.steps(t, p.Task.ID)[0]
			requireTimeEqual(t, created.Add(2), st.UpdatedAt, "step UpdatedAt")
			requireTimeEqual(t, updated.Add(3), st.NextRetryAt, "step NextRetryAt")
			requireTimeEqual(t, created.Add(4), f.transitions(t, p.Task.ID)[0].At, "transition At")
		})

		t.Run("SetsSeqOnInitialTransitions", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			p := f.taskParams("linear", "a", "b")
			p.Transitions = []*store.Transition{
				{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.ResolvedManually, At: f.now(), Reason: "bypassed"},
				{From: state.Pending, To: state.InProgress, At: f.now(), Reason: "started"},
			}
			f.create(t, p)
			stored := f.transitions(t, p.Task.ID)
			require.Len(t, stored, 2)
			for i := range stored {
				require.Equal(t, stored[i].Seq, p.Transitions[i].Seq, "transition %d", i)
			}
			require.Greater(t, p.Transitions[1].Seq, p.Transitions[0].Seq)
		})

		t.Run("ZeroTimesStayZero", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			p := f.taskParams("linear", "only")
			f.create(t, p)
			require.True(t, f.task(t, p.Task.ID).CompletedAt.IsZero())
			require.True(t, f.steps(t, p.Task.ID)[0].NextRetryAt.IsZero())
		})

		t.Run("StoresInitialTransitions", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			p := f.taskParams("linear", "fetch", "cleanup", "report")
			p.Task.BypassSteps = []string{"cleanup"}
			bypassed := p.Steps[1]
			bypassed.Skippable = true
			bypassed.State = state.ResolvedManually
			p.Transitions = []*store.Transition{
				{From: "", To: state.Pending, At: p.Task.CreatedAt, Reason: "created"},
				{
					StepID: bypassed.ID, StepName: bypassed.Name, From: state.Pending, To: state.ResolvedManually,
					At: p.Task.CreatedAt, Reason: "bypassed", Metadata: json.RawMessage(`{"by": "bypass_steps"}`),
				},
			}
			f.create(t, p)

			got := f.transitions(t, p.Task.ID)
			want := []*store.Transition{}
			for _, tr := range p.Transitions {
				c := *tr
				c.TaskID = p.Task.ID
				want = append(want, &c)
			}
			requireTransitions(t, want, got)
			requireSeqIncreasing(t, got, 0)
			require.Equal(t, state.ResolvedManually, f.stepByName(t, p.Task.ID, "cleanup").State)
		})

		t.Run("IdempotentByIdentityKey", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			first := f.taskParams("linear", "a", "b")
			first.Transitions = []*store.Transition{{From: "", To: state.Pending, At: first.Task.CreatedAt, Reason: "created"}}
			f.create(t, first)

			// A repeat with the same key but everything else new: the
			// first task comes back and nothing of the repeat is written.
			repeat := f.taskParams("linear", "a", "b", "c")
			repeat.Task.IdentityKey = first.Task.IdentityKey
			repeat.Task.Context = json.RawMessage(`{"order_id":43}`)
			repeat.Transitions = []*store.Transition{{From: "", To: state.Pending, At: repeat.Task.CreatedAt, Reason: "again"}}
			task, created, err := f.store.TaskCreate(f.ctx, repeat)
			require.NoError(t, err)
			require.False(t, created)
			requireTask(t, first.Task, task)

			_, err = f.store.TaskGet(f.ctx, repeat.Task.ID)
			require.ErrorIs(t, err, store.ErrNotFound)
			require.Empty(t, f.steps(t, repeat.Task.ID))
			require.Empty(t, f.transitions(t, repeat.Task.ID))
			requireSteps(t, first.Steps, f.steps(t, first.Task.ID))
			require.Len(t, f.transitions(t, first.Task.ID), 1)
			list, err := f.store.TaskList(f.ctx, &store.TaskListParams{Namespace: f.ns})
			require.NoError(t, err)
			require.Len(t, list, 1)
		})

		t.Run("DistinctKeysMakeDistinctTasks", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			a := f.taskParams("linear", "x")
			b := f.taskParams("linear", "x")
			b.Task.Context = a.Task.Context
			f.create(t, a)
			f.create(t, b)
			require.Len(t, f.steps(t, a.Task.ID, b.Task.ID), 2)
		})
	})

	t.Run("TaskGet", func(t *testing.T) {
		t.Parallel()

		t.Run("UnknownIsNotFound", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			f.createTask(t, "a")
			_, err := f.store.TaskGet(f.ctx, newID())
			require.ErrorIs(t, err, store.ErrNotFound)
		})
	})
}
