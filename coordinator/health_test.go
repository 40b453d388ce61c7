package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/coordinator"
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
