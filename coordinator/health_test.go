package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

// readyHarness is a coordinator whose lease outlives the test, so only the
// test itself changes it: its keeper renews every third of the TTL.
func readyHarness(t *testing.T) *harness {
	t.Helper()
	st := openSQLite(t)
	h := serveCoordinator(t, coordinator.Config{Store: st, LeaseTTL: time.Hour}, nil)
	h.store = st
	return h
}

func TestReadyWhileLeaseHeldAndStoreAnswers(t *testing.T) {
	t.Parallel()
	h := readyHarness(t)
	require.NoError(t, h.coord.Ready(h.ctx))
}

// A restart elsewhere under the same id replaces the lease in the store:
// this coordinator's writes would now be refused, so it is not ready,
// although its own copy of the lease has not expired.
func TestNotReadyOnceLeaseLost(t *testing.T) {
	t.Parallel()
	h := readyHarness(t)
	_, err := h.store.LeaseAcquire(h.ctx, &store.LeaseAcquireParams{CoordinatorID: h.coord.ID(), TTL: time.Hour, Now: time.Now().UTC()})
	require.NoError(t, err)
	err = h.coord.Ready(h.ctx)
	require.ErrorIs(t, err, coordinator.ErrNotReady)
	require.ErrorContains(t, err, "is no longer live in the store")
}

func TestNotReadyOnceStoreClosed(t *testing.T) {
	t.Parallel()
	h := readyHarness(t)
	require.NoError(t, h.store.Close())
	err := h.coord.Ready(h.ctx)
	require.ErrorIs(t, err, coordinator.ErrNotReady)
	require.ErrorIs(t, err, store.ErrClosed)
}

func TestNotReadyOnceStopped(t *testing.T) {
	t.Parallel()
	h := readyHarness(t)
	require.NoError(t, h.coord.Stop(context.Background()))
	err := h.coord.Ready(h.ctx)
	require.ErrorIs(t, err, coordinator.ErrNotReady)
	require.ErrorContains(t, err, "is stopping")
}

// A store that keeps the lease but refuses the work (a SQLite disk so
// nearly full that only the lease's small writes fit) makes the
// coordinator unready once creates have failed for a second, saying why,
// and ready again with the first write that lands.
func TestNotReadyWhileStoreRefusesWork(t *testing.T) {
	t.Parallel()
	fs := &fullStore{Store: openSQLite(t)}
	h := storeHarness(t, fs, coordinator.Config{LeaseTTL: time.Hour})
	h.apply(`
namespace: test
name: refused
version: 1.0.0
steps:
  - name: only
    handler: noop
`)
	require.NoError(t, h.coord.Ready(h.ctx))

	fs.refuseWork.Store(true)
	req := &coordinatorv1.CreateTaskRequest{Namespace: "test", Name: "refused"}
	require.Eventually(t, func() bool {
		_, err := h.client.CreateTask(h.ctx, req)
		require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		return h.coord.Ready(h.ctx) != nil
	}, 20*time.Second, 10*time.Millisecond)
	err := h.coord.Ready(h.ctx)
	require.ErrorIs(t, err, coordinator.ErrNotReady)
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorContains(t, err, "the store has refused every write for")
	require.ErrorContains(t, err, "database or disk is full")

	fs.refuseWork.Store(false)
	h.create("test", "refused", map[string]any{})
	require.NoError(t, h.coord.Ready(h.ctx))
}
