// Package storetest is the conformance suite every store.Store driver must
// pass, and the one home of test code the drivers share. A driver's test
// calls Exercise with a factory for fresh databases; the suite checks the
// semantics written in store.go's doc comments, so drivers agree with each
// other and with the coordinator that relies on them. Drivers that offer
// more (StatsStore, WriteHolder) get the cases that need it; the others
// skip them.
//
// Cases are split by area (templates.go, task_create.go, task_advance.go,
// listing.go, finished.go, counts.go, concurrency.go, leases.go, take.go,
// lifecycle.go, events.go, limits.go, debounce.go, schedules.go, signals.go), and subtests are named after the interface
// method they exercise, so a failure names the method at fault.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
)

// Opener opens another store on one database and closes it in t.Cleanup.
// Stores opened by one Opener share everything they store, as coordinators
// sharing a database (or one coordinator restarting) do.
type Opener func(t testing.TB) store.Store

// NewDatabase makes a database no other test uses and returns its Opener.
type NewDatabase func(t testing.TB) Opener

// StatsStore is a store that counts what its group committer did; the
// suite checks batching and withdrawal on drivers that implement it.
type StatsStore interface {
	store.Store
	Stats() groupcommit.Stats
}

// WriteHolder is a store whose writes a test can hold up, as another
// process holding the database's write lock would: until release is
// called, the committer's next batch cannot write anything. Drivers'
// tests implement it (around the driver's store) for the suite's cases
// that need a batch held.
type WriteHolder interface {
	HoldWrites(t testing.TB) (release func())
}

// Exercise runs the whole suite. Close on a store from newDatabase's Opener
// must tolerate being called again after the suite's own Close tests.
// Subtests run in parallel, each with a database of its own.
func Exercise(ctx context.Context, t *testing.T, newDatabase NewDatabase) {
	t.Helper()
	s := &suite{ctx: ctx, newDatabase: newDatabase}
	s.templates(t)
	s.taskCreate(t)
	s.taskAdvance(t)
	s.skipped(t)
	s.newSteps(t)
	s.listing(t)
	s.finished(t)
	s.counts(t)
	s.concurrency(t)
	s.admission(t)
	s.leases(t)
	s.taskTake(t)
	s.lifecycle(t)
	s.events(t)
	s.taskPrune(t)
	s.rateLimits(t)
	s.debounce(t)
	s.schedules(t)
	s.rerun(t)
	s.signals(t)
	s.children(t)
}

type suite struct {
	ctx         context.Context
	newDatabase NewDatabase
}

// fixture is the per-test bundle: a fresh store plus factories for rows.
// Its clock is deterministic and carries nanoseconds, so round-trip checks
// catch any driver that rounds time.
type fixture struct {
	ctx   context.Context
	store store.Store
	// open opens another store on store's database.
	open  Opener
	ns    string
	ticks atomic.Int64
}

func (s *suite) setup(t testing.TB) *fixture {
	t.Helper()
	open := s.newDatabase(t)
	return &fixture{
		ctx:   s.ctx,
		store: open(t),
		open:  open,
		ns:    "ns-" + uuid.NewString()[:8],
	}
}

// baseTime has a nanosecond component no microsecond clock could hold.
var baseTime = time.Date(2026, time.March, 14, 15, 9, 26, 535897932, time.UTC)

// now returns a later instant on every call, safe for concurrent use.
func (f *fixture) now() time.Time {
	n := f.ticks.Add(1)
	return baseTime.Add(time.Duration(n) * 1_000_000_007)
}

// linearSteps are the step names of Tasker's linear reference workflow.
var linearSteps = []string{
	"initialize_data", "validate_input", "process_data",
	"transform_results", "validate_output", "finalize_workflow",
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// taskParams builds a pending task with the named steps in a chain. IDs are
// UUIDv7, so tasks made later sort later, as the store expects.
func (f *fixture) taskParams(name string, steps ...string) *store.TaskCreateParams {
	at := f.now()
	id := newID()
	p := &store.TaskCreateParams{
		Task: &store.Task{
			ID:          id,
			Namespace:   f.ns,
			Name:        name,
			Version:     "1.0.0",
			State:       state.Pending,
			Context:     json.RawMessage(`{"order_id":42,"items":["a","b"]}`),
			IdentityKey: "identity-" + id,
			CreatedAt:   at,
			UpdatedAt:   at,
		},
	}
	for i, stepName := range steps {
		st := &store.Step{
			ID:          newID(),
			TaskID:      id,
			Name:        stepName,
			Position:    i,
			Handler:     "handle_" + stepName,
			State:       state.Pending,
			MaxAttempts: 3,
			Retryable:   true,
			UpdatedAt:   at,
		}
		if i > 0 {
			st.DependsOn = []string{steps[i-1]}
		}
		p.Steps = append(p.Steps, st)
	}
	return p
}

// create stores p and fails the test unless it was created.
func (f *fixture) create(t *testing.T, p *store.TaskCreateParams) *store.Task {
	t.Helper()
	task, created, err := f.store.TaskCreate(f.ctx, p)
	require.NoError(t, err)
	require.True(t, created, "task %s should be new", p.Task.ID)
	return task
}

// createTask makes and stores a task with the given steps.
func (f *fixture) createTask(t *testing.T, steps ...string) (*store.Task, []*store.Step) {
	t.Helper()
	p := f.taskParams("linear", steps...)
	return f.create(t, p), p.Steps
}

// advance applies p and fails the test on error.
func (f *fixture) advance(t *testing.T, p *store.TaskAdvanceParams) []*store.Transition {
	t.Helper()
	trs, err := f.store.TaskAdvance(f.ctx, p)
	require.NoError(t, err)
	return trs
}

func (f *fixture) task(t *testing.T, id string) *store.Task {
	t.Helper()
	task, err := f.store.TaskGet(f.ctx, id)
	require.NoError(t, err)
	return task
}

func (f *fixture) steps(t *testing.T, ids ...string) []*store.Step {
	t.Helper()
	steps, err := f.store.StepList(f.ctx, ids...)
	require.NoError(t, err)
	return steps
}

func (f *fixture) stepByName(t *testing.T, taskID, name string) *store.Step {
	t.Helper()
	for _, st := range f.steps(t, taskID) {
		if st.Name == name {
			return st
		}
	}
	require.FailNow(t, "step not found", "task %s has no step %s", taskID, name)
	return nil
}

func (f *fixture) transitions(t *testing.T, taskID string) []*store.Transition {
	t.Helper()
	trs, err := f.store.TransitionList(f.ctx, &store.TransitionListParams{TaskID: taskID})
	require.NoError(t, err)
	return trs
}

// Comparison. Drivers may differ in how they spell JSON (jsonb reorders
// keys), in the time zone they return, and in nil versus empty lists; the
// helpers below normalise exactly those and nothing else, so times must
// still match to the nanosecond.

func requireTask(t *testing.T, want, got *store.Task) {
	t.Helper()
	require.NotNil(t, got)
	require.Equal(t, normTask(t, want), normTask(t, got))
}

func requireSteps(t *testing.T, want, got []*store.Step) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, normStep(t, want[i]), normStep(t, got[i]), "step %d", i)
	}
}

// requireTransitions compares transitions ignoring Seq, which the store
// assigns; requireSeqIncreasing checks Seq separately.
func requireTransitions(t *testing.T, want, got []*store.Transition) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := normTransition(t, want[i]), normTransition(t, got[i])
		w.Seq, g.Seq = 0, 0
		require.Equal(t, w, g, "transition %d", i)
	}
}

func requireSeqIncreasing(t *testing.T, trs []*store.Transition, after int64) {
	t.Helper()
	for i, tr := range trs {
		require.Greater(t, tr.Seq, after, "transition %d seq", i)
		after = tr.Seq
	}
}

func requireTimeEqual(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	require.True(t, want.Equal(got), "%s: want %s, got %s", what,
		want.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano))
}

func normTask(t *testing.T, in *store.Task) store.Task {
	out := *in
	out.Context = normJSON(t, in.Context)
	out.BypassSteps = normList(in.BypassSteps)
	out.CreatedAt = in.CreatedAt.UTC()
	out.UpdatedAt = in.UpdatedAt.UTC()
	out.CompletedAt = in.CompletedAt.UTC()
	out.RunAt = in.RunAt.UTC()
	return out
}

func normStep(t *testing.T, in *store.Step) store.Step {
	out := *in
	out.DependsOn = normList(in.DependsOn)
	out.Results = normJSON(t, in.Results)
	if in.Error != nil {
		e := *in.Error
		out.Error = &e
	}
	out.NextRetryAt = in.NextRetryAt.UTC()
	out.UpdatedAt = in.UpdatedAt.UTC()
	return out
}

func normTransition(t *testing.T, in *store.Transition) store.Transition {
	out := *in
	out.Metadata = normJSON(t, in.Metadata)
	out.At = in.At.UTC()
	return out
}

func normList(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	return in
}

// normJSON re-encodes JSON canonically (sorted keys, no spaces); nil and
// empty stay nil.
func normJSON(t *testing.T, raw json.RawMessage) json.RawMessage {
	t.Helper()
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v), "stored JSON %s", raw)
	out, err := json.Marshal(v)
	require.NoError(t, err)
	return out
}

// startStep is the common move of a step from pending to its first attempt.
func startStep(st *store.Step) *store.StepChange {
	return &store.StepChange{
		StepID:         st.ID,
		StepName:       st.Name,
		From:           state.Pending,
		To:             state.InProgress,
		ExpectAttempts: st.Attempts,
		Attempts:       st.Attempts + 1,
		Reason:         "dispatched",
	}
}
