package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

func (s *suite) lifecycle(t *testing.T) {
	t.Run("Close", func(t *testing.T) {
		t.Parallel()

		t.Run("LaterCallsFailWithErrClosed", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			task, steps := f.createTask(t, "a")
			require.NoError(t, f.store.Close())
			require.NoError(t, f.store.Close(), "Close may be called again")

			_, _, err := f.store.TaskCreate(f.ctx, f.taskParams("linear", "a"))
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskAdvance(f.ctx, &store.TaskAdvanceParams{
				TaskID: task.ID, Steps: []*store.StepChange{startStep(steps[0])}, At: f.now(),
			})
			require.ErrorIs(t, err, store.ErrClosed)
			_, _, err = f.store.TemplateRegister(f.ctx, f.templateParams("t", "1.0.0", "d"))
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskGet(f.ctx, task.ID)
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskList(f.ctx, &store.TaskListParams{State: state.Pending})
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskListActive(f.ctx, &store.TaskListActiveParams{})
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.StepList(f.ctx, task.ID)
			require.ErrorIs(t, err, store.ErrClosed)
			lease := &store.Lease{CoordinatorID: "a", Token: 1, Expires: f.now().Add(leaseTTL)}
			_, err = f.store.TaskTake(f.ctx, &store.TaskTakeParams{Lease: lease, TaskID: task.ID, Now: f.now()})
			require.ErrorIs(t, err, store.ErrClosed)
			_, err = f.store.TaskClaim(f.ctx, &store.TaskClaimParams{Lease: lease, Now: f.now()})
			require.ErrorIs(t, err, store.ErrClosed)
		})

		// A store opened again on the database (a restart) sees every
		// write, and sequence numbers and lease tokens go on growing
		// rather than starting over.
		t.Run("ReopenedStoreKeepsEverything", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			at := f.now()
			tmpl, _, err := f.store.TemplateRegister(f.ctx, &store.TemplateRegisterParams{
				Namespace: f.ns, Name: "orders", Version: "1.0.0", Digest: "d", Spec: json.RawMessage(`{"a":1}`), At: at,
			})
			require.NoError(t, err)
			lease, err := f.store.LeaseAcquire(f.ctx, &store.LeaseAcquireParams{CoordinatorID: "a", TTL: leaseTTL, Now: at, Address: "a:7070"})
			require.NoError(t, err)
			p := f.taskParams("linear", "a", "b")
			p.Task.OwnerToken = lease.Token
			f.create(t, p)
			trs := f.advance(t, &store.TaskAdvanceParams{
				TaskID: p.Task.ID, Lease: lease, At: f.now(),
				Task:  &store.TaskChange{From: state.Pending, To: state.InProgress},
				Steps: []*store.StepChange{startStep(p.Steps[0])},
			})
			task, steps := f.task(t, p.Task.ID), f.steps(t, p.Task.ID)
			require.NoError(t, f.store.Close())

			again := &fixture{ctx: f.ctx, store: f.open(t), open: f.open, ns: f.ns}
			gotTmpl, err := again.store.TemplateGet(f.ctx, &store.TemplateGetParams{Namespace: f.ns, Name: "orders", Version: "1.0.0"})
			require.NoError(t, err)
			require.Equal(t, tmpl, gotTmpl)
			requireTask(t, task, again.task(t, p.Task.ID))
			requireSteps(t, steps, again.steps(t, p.Task.ID))
			got := again.transitions(t, p.Task.ID)
			requireTransitions(t, trs, got)
			require.Equal(t, trs[len(trs)-1].Seq, got[len(got)-1].Seq)
			requireLeases(t, []*store.Lease{lease}, again.leaseList(t, at))

			more := again.advance(t, &store.TaskAdvanceParams{
				TaskID: p.Task.ID, Lease: lease, At: f.now().Add(time.Second),
				Steps: []*store.StepChange{completeStep(p.Steps[0], 1, `{}`)},
			})
			require.Greater(t, more[0].Seq, trs[len(trs)-1].Seq)
			require.Greater(t, again.acquire(t, "b").Token, lease.Token)
		})
	})
}
