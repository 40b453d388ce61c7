package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
	"github.com/tasker-go/tasker/store/storetest"
)

// TestBatchTransitionSeqs runs one batch of writes whose transitions are
// all inserted when it commits: each write's Seqs follow on from the
// largest stored one, in request order and, within a request, in the
// order of its changes; a request that fails half way stores none of its
// transitions and takes no numbers; and each Seq is the stored row's.
func TestBatchTransitionSeqs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Unix(1_700_000_000, 0)
	lease, err := s.LeaseAcquire(ctx, &store.LeaseAcquireParams{CoordinatorID: "c", TTL: time.Hour, Now: at})
	require.NoError(t, err)

	before := storetest.TaskParams("ns", at, "a", "b")
	before.Task.OwnerToken = lease.Token
	_, _, err = s.TaskCreate(ctx, before)
	require.NoError(t, err)
	first, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: before.Task.ID, Lease: lease, At: at,
		Task: &store.TaskChange{From: state.Pending, To: state.InProgress}})
	require.NoError(t, err)
	last := first[0].Seq

	created := storetest.TaskParams("ns", at, "a", "b")
	created.Task.OwnerToken = lease.Token
	created.Transitions = []*store.Transition{{TaskID: created.Task.ID, StepID: created.Steps[1].ID, StepName: "b", From: state.Pending,
		To: state.ResolvedManually, At: at, Reason: "bypassed"}}
	start := func(st *store.Step) *store.StepChange {
		return &store.StepChange{StepID: st.ID, StepName: st.Name, From: state.Pending, To: state.InProgress, Attempts: 1}
	}
	var (
		createdTask         *store.Task
		started, failed, bg []*store.Transition
	)
	advance := func(p *store.TaskAdvanceParams, out *[]*store.Transition) func(context.Context, *wtx) error {
		return func(ctx context.Context, tx *wtx) (err error) {
			*out, err = advanceTask(ctx, tx, p)
			return err
		}
	}
	batch := []*groupcommit.Request[applyFunc]{
		groupcommit.NewRequest("create", func(ctx context.Context, tx *wtx) (err error) {
			createdTask, _, err = createTask(ctx, tx, created)
			return err
		}),
		// Starts the task created by the request before it.
		groupcommit.NewRequest("start", advance(&store.TaskAdvanceParams{TaskID: created.Task.ID, Lease: lease, At: at,
			Steps: []*store.StepChange{start(created.Steps[0])},
			Task:  &store.TaskChange{From: state.Pending, To: state.InProgress}}, &started)),
		// Its first change applies, its second does not hold.
		groupcommit.NewRequest("stale", advance(&store.TaskAdvanceParams{TaskID: before.Task.ID, Lease: lease, At: at,
			Steps: []*store.StepChange{start(before.Steps[0]), start(before.Steps[0])}}, &failed)),
		groupcommit.NewRequest("other", advance(&store.TaskAdvanceParams{TaskID: before.Task.ID, Lease: lease, At: at,
			Steps: []*store.StepChange{start(before.Steps[1])}}, &bg)),
	}
	s.committer.RunBatch(batch)
	require.NoError(t, batch[0].Wait())
	require.NotNil(t, createdTask)
	require.NoError(t, batch[1].Wait())
	require.ErrorIs(t, batch[2].Wait(), store.ErrConflict)
	require.NoError(t, batch[3].Wait())
	require.Nil(t, failed)

	want := append(append(append([]*store.Transition(nil), created.Transitions...), started...), bg...)
	require.Len(t, want, 4)
	for i, tr := range want {
		require.Equal(t, last+int64(i)+1, tr.Seq, "transition %d", i)
		require.Equal(t, lease.Token, tr.LeaseToken, "transition %d", i)
	}
	require.Equal(t, "a", started[0].StepName)
	require.Empty(t, started[1].StepID, "the task's change comes after its steps'")

	stored := func(taskID string) []*store.Transition {
		trs, err := s.TransitionList(ctx, &store.TransitionListParams{TaskID: taskID, AfterSeq: last})
		require.NoError(t, err)
		return trs
	}
	requireSame := func(want, got []*store.Transition) {
		t.Helper()
		require.Len(t, got, len(want))
		for i := range want {
			w, g := *want[i], *got[i]
			require.True(t, w.At.Equal(g.At))
			w.At, g.At = time.Time{}, time.Time{}
			require.Equal(t, w, g)
		}
	}
	requireSame(append(created.Transitions, started...), stored(created.Task.ID))
	requireSame(bg, stored(before.Task.ID))
	page, err := s.EventList(ctx, &store.EventListParams{After: formatCursor(last)})
	require.NoError(t, err)
	require.Len(t, page.Events, 4)
	for i, ev := range page.Events {
		require.Equal(t, want[i].Seq, ev.Transition.Seq)
	}
}

// TestInsertStepsNamesTheStepAtFault: steps go in multi-row statements,
// but a refused one is still named in the error, and none of the
// write's steps is stored.
func TestInsertStepsNamesTheStepAtFault(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Unix(1_700_000_000, 0)

	// Five steps go as four and one; the clash is inside the four.
	p := storetest.TaskParams("ns", at, "a", "b", "c", "d", "e")
	p.Steps[3].Name = "c"
	_, _, err := s.TaskCreate(ctx, p)
	require.ErrorContains(t, err, "insert step c ("+p.Steps[3].ID+")")
	_, err = s.TaskGet(ctx, p.Task.ID)
	require.ErrorIs(t, err, store.ErrNotFound)

	q := storetest.TaskParams("ns", at, "a")
	_, _, err = s.TaskCreate(ctx, q)
	require.NoError(t, err)
	fresh := func(name string) *store.Step {
		return &store.Step{ID: uuid.Must(uuid.NewV7()).String(), TaskID: q.Task.ID, Name: name, Position: 1,
			Handler: "h", State: state.Pending, MaxAttempts: 3, Retryable: true}
	}
	added := []*store.Step{fresh("x[0]"), fresh("a"), fresh("x[1]")}
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: q.Task.ID, At: at, NewSteps: added})
	require.ErrorContains(t, err, "insert step a ("+added[1].ID+")")
	steps, err := s.StepList(ctx, q.Task.ID)
	require.NoError(t, err)
	require.Len(t, steps, 1)

	added[1].Name = "x[2]"
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: q.Task.ID, At: at, NewSteps: added})
	require.NoError(t, err)
	steps, err = s.StepList(ctx, q.Task.ID)
	require.NoError(t, err)
	require.Len(t, steps, 4)
}

// TestFencedAdvanceWithoutRead: the fence a step or task change carries in
// its own WHERE refuses a lease that does not own the task, or is no longer
// live, with ErrLeaseLost, before any conflict of the change itself.
func TestFencedAdvanceWithoutRead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Unix(1_700_000_000, 0)
	lease, err := s.LeaseAcquire(ctx, &store.LeaseAcquireParams{CoordinatorID: "c", TTL: time.Minute, Now: at})
	require.NoError(t, err)
	other, err := s.LeaseAcquire(ctx, &store.LeaseAcquireParams{CoordinatorID: "d", TTL: time.Hour, Now: at})
	require.NoError(t, err)
	p := storetest.TaskParams("ns", at, "a")
	p.Task.OwnerToken = lease.Token
	_, _, err = s.TaskCreate(ctx, p)
	require.NoError(t, err)

	step := &store.StepChange{StepID: p.Steps[0].ID, StepName: "a", From: state.Pending, To: state.InProgress, Attempts: 1}
	stale := &store.StepChange{StepID: p.Steps[0].ID, StepName: "a", From: state.Error, To: state.Pending}
	task := &store.TaskChange{From: state.Pending, To: state.InProgress}
	staleTask := &store.TaskChange{From: state.Complete, To: state.Cancelled}
	for name, tc := range map[string]struct {
		lease *store.Lease
		at    time.Time
		steps []*store.StepChange
		task  *store.TaskChange
	}{
		"step, not the owner":         {lease: other, at: at, steps: []*store.StepChange{step}},
		"step, expired":               {lease: lease, at: at.Add(time.Hour), steps: []*store.StepChange{step}},
		"stale step, not the owner":   {lease: other, at: at, steps: []*store.StepChange{stale}},
		"task, not the owner":         {lease: other, at: at, task: task},
		"task, expired":               {lease: lease, at: at.Add(time.Hour), task: task},
		"stale task, expired":         {lease: lease, at: at.Add(time.Hour), task: staleTask},
		"unnamed step, not the owner": {lease: other, at: at, steps: []*store.StepChange{{StepID: step.StepID, From: state.Pending, To: state.InProgress, Attempts: 1}}},
	} {
		_, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, Lease: tc.lease, At: tc.at, Steps: tc.steps, Task: tc.task})
		require.ErrorIs(t, err, store.ErrLeaseLost, name)
	}
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, Lease: lease, At: at, Steps: []*store.StepChange{stale}})
	require.ErrorIs(t, err, store.ErrConflict)
	_, err = s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, Lease: lease, At: at, Task: staleTask})
	require.ErrorIs(t, err, store.ErrConflict)

	// A caller's step name that differs from the stored one is still
	// applied, and the stored name recorded.
	renamed := *step
	renamed.StepName = "not-a"
	trs, err := s.TaskAdvance(ctx, &store.TaskAdvanceParams{TaskID: p.Task.ID, Lease: lease, At: at,
		Steps: []*store.StepChange{&renamed}, Task: task})
	require.NoError(t, err)
	require.Equal(t, "a", trs[0].StepName)
}

// TestFailedRequestFailsAlone: a batch runs without savepoints first; a
// request that fails in the middle, after writing, aborts that run, and
// the batch runs again with savepoints, so the failed request fails alone,
// with its own error, nothing it wrote stays, and the requests before and
// after it commit once each. A rate-limit draw made in the aborted run is
// not counted twice.
func TestFailedRequestFailsAlone(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err := s.RateLimitSet(ctx, &store.RateLimitSetParams{Name: "api", Units: 1, Period: time.Hour, Burst: 10, At: at})
	require.NoError(t, err)
	stale := storetest.TaskParams("ns", at, "a")
	_, _, err = s.TaskCreate(ctx, stale)
	require.NoError(t, err)
	before, partial, after := storetest.TaskParams("ns", at, "a"), storetest.TaskParams("ns", at, "a"), storetest.TaskParams("ns", at, "a")

	runs := 0
	batch := []*groupcommit.Request[applyFunc]{
		groupcommit.NewRequest("before", func(ctx context.Context, tx *wtx) error {
			runs++
			d, err := admissionTx{tx}.Draw(ctx, "api", "tenant")
			if err != nil {
				return err
			}
			b := *d.Bucket
			b.Tokens--
			if err := (admissionTx{tx}).PutBucket(ctx, "api", "tenant", b); err != nil {
				return err
			}
			_, _, err = createTask(ctx, tx, before)
			return err
		}),
		groupcommit.NewRequest("failed", func(ctx context.Context, tx *wtx) error {
			// It writes a task, then fails on a stale step change.
			if _, _, err := createTask(ctx, tx, partial); err != nil {
				return err
			}
			_, err := advanceTask(ctx, tx, &store.TaskAdvanceParams{TaskID: stale.Task.ID, At: at, Steps: []*store.StepChange{{
				StepID: stale.Steps[0].ID, StepName: "a", From: state.InProgress, To: state.Complete, ExpectAttempts: 1, Attempts: 1}}})
			return err
		}),
		groupcommit.NewRequest("after", func(ctx context.Context, tx *wtx) error {
			_, _, err := createTask(ctx, tx, after)
			return err
		}),
	}
	s.committer.RunBatch(batch)
	require.NoError(t, batch[0].Wait())
	require.ErrorIs(t, batch[1].Wait(), store.ErrConflict)
	require.NoError(t, batch[2].Wait())
	require.Equal(t, 2, runs, "the batch ran once without savepoints and once with")

	for _, p := range []*store.TaskCreateParams{before, after} {
		trs, err := s.TransitionList(ctx, &store.TransitionListParams{TaskID: p.Task.ID})
		require.NoError(t, err)
		require.Len(t, trs, len(p.Transitions), "task %s stored once", p.Task.ID)
	}
	_, err = s.TaskGet(ctx, partial.Task.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	storetest.RequireTaskState(t, s, stale.Task.ID, state.Pending, 0)
	var tokens float64
	require.NoError(t, s.reader.GetContext(ctx, &tokens, `SELECT tokens FROM rate_buckets WHERE limit_name = 'api' AND key = 'tenant'`))
	require.Equal(t, 9.0, tokens, "one draw of one token from a burst of 10")
}

// TestFailedCommitLeavesNoTransactionOpen fails a batch at its COMMIT,
// which SQLite refuses with the transaction still open (a deferred foreign
// key check fails there), and then writes again: the committer must have
// ended that transaction, or every later batch fails to begin ("cannot
// start a transaction within a transaction").
func TestFailedCommitLeavesNoTransactionOpen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{})
	at := time.Unix(1_700_000_000, 0)

	err := s.write(ctx, "orphan signal", func(ctx context.Context, tx *wtx) error {
		if _, err := tx.ExecContext(ctx, `PRAGMA defer_foreign_keys = ON`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO signals (id, task_id, name, received_at) VALUES (?, ?, ?, ?)`,
			uuid.NewString(), uuid.NewString(), "go", at.UnixNano())
		return err
	})
	require.ErrorContains(t, err, "commit")
	require.ErrorContains(t, err, "FOREIGN KEY")

	var signals int
	require.NoError(t, s.reader.GetContext(ctx, &signals, `SELECT count(*) FROM signals`))
	require.Zero(t, signals, "the failed batch stored nothing")

	p := storetest.TaskParams("ns", at, "a")
	_, _, err = s.TaskCreate(ctx, p)
	require.NoError(t, err, "the next batch begins afresh")
	got, err := s.TaskGet(ctx, p.Task.ID)
	require.NoError(t, err)
	require.Equal(t, p.Task.ID, got.ID)
}
