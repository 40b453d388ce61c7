package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
)

// Helpers for drivers' own tests, which reach into a driver's internals
// (its committer, its SQL) where the suite cannot.

// TaskParams builds a pending task in namespace ns with the named steps,
// each pending with three attempts, all stamped at.
func TaskParams(ns string, at time.Time, steps ...string) *store.TaskCreateParams {
	id := newID()
	p := &store.TaskCreateParams{Task: &store.Task{
		ID: id, Namespace: ns, Name: "linear", Version: "1.0.0", State: state.Pending,
		Context: json.RawMessage(`{}`), IdentityKey: "key-" + id, CreatedAt: at, UpdatedAt: at,
	}}
	for i, name := range steps {
		p.Steps = append(p.Steps, &store.Step{
			ID: uuid.Must(uuid.NewV7()).String(), TaskID: id, Name: name, Position: i, Handler: "h",
			State: state.Pending, MaxAttempts: 3, Retryable: true, UpdatedAt: at,
		})
	}
	return p
}

// RequireTaskState checks a task made by TaskParams: its state, its first
// step's attempts, and 2×attempts transitions, as drivers' tests start an
// attempt by moving the task and its first step in one TaskAdvance.
func RequireTaskState(t *testing.T, s store.Store, id string, want state.State, attempts int) {
	t.Helper()
	task, err := s.TaskGet(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, want, task.State)
	steps, err := s.StepList(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, attempts, steps[0].Attempts)
	trs, err := s.TransitionList(t.Context(), &store.TransitionListParams{TaskID: id})
	require.NoError(t, err)
	require.Len(t, trs, 2*attempts)
}

// RequireBatchFailed checks a batch that failed as a whole, after a
// driver's test sabotaged it: every request's error says the batch failed,
// nothing was committed or counted, created (a task the batch created) is
// not stored, and the store writes again afterwards.
func RequireBatchFailed(t *testing.T, s StatsStore, before groupcommit.Stats, created *store.TaskCreateParams, errs ...error) {
	t.Helper()
	for i, err := range errs {
		require.ErrorContains(t, err, fmt.Sprintf("batch of %d writes failed", len(errs)), "request %d", i)
	}
	require.Equal(t, before, s.Stats())
	_, err := s.TaskGet(t.Context(), created.Task.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	_, ok, err := s.TaskCreate(t.Context(), created)
	require.NoError(t, err, "the store writes again after a failed batch")
	require.True(t, ok)
}

// SeedTasks stores n one-step tasks in namespace ns for plan tests, every
// other one complete, so a plan that reads finished tasks has some to read.
func SeedTasks(t *testing.T, s store.Store, ns string, n int) {
	t.Helper()
	for i := range n {
		p := TaskParams(ns, time.Now(), "a")
		if i%2 == 0 {
			p.Task.State = state.Complete
		}
		_, _, err := s.TaskCreate(t.Context(), p)
		require.NoError(t, err)
	}
}

// TaskListPlan is a TaskList filter and the index both drivers serve it
// with, newest first, without a sort.
type TaskListPlan struct {
	Params store.TaskListParams
	Index  string
}

// TaskListPlans are the filters the drivers' plan tests pin to an index.
func TaskListPlans(ns string) []TaskListPlan {
	return []TaskListPlan{
		{store.TaskListParams{State: state.Pending}, "tasks_state_id"},
		{store.TaskListParams{State: state.Pending, BeforeID: "z"}, "tasks_state_id"},
		{store.TaskListParams{Namespace: ns, Name: "linear"}, "tasks_namespace_name_id"},
		{store.TaskListParams{Namespace: ns, Name: "linear", BeforeID: "z"}, "tasks_namespace_name_id"},
		// A context match is read off each row the index yields.
		{store.TaskListParams{Namespace: ns, Name: "linear", Context: []store.ContextMatch{{Path: []string{"order_id"}, Value: "A-1"}}}, "tasks_namespace_name_id"},
	}
}
