package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	// gRPC health, which probes without HTTP ask, follows within a second
	// or so: the server as a whole and the coordinator's service. Creates
	// keep failing meanwhile, as they would under load.
	hc := healthClient(t, h.addr)
	requireHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		require.Eventually(t, func() bool {
			_, _ = h.client.CreateTask(h.ctx, req)
			for _, svc := range []string{"", coordinatorv1.CoordinatorService_ServiceDesc.ServiceName} {
				resp, err := hc.Check(h.ctx, &healthpb.HealthCheckRequest{Service: svc})
				if err != nil || resp.GetStatus() != want {
					return false
				}
			}
			return true
		}, 20*time.Second, 20*time.Millisecond, "gRPC health never turned %s", want)
	}
	requireHealth(healthpb.HealthCheckResponse_NOT_SERVING)

	fs.refuseWork.Store(false)
	h.create("test", "refused", map[string]any{})
	require.NoError(t, h.coord.Ready(h.ctx))
	requireHealth(healthpb.HealthCheckResponse_SERVING)
}

// healthClient is a grpc.health.v1 client of the server at addr.
func healthClient(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return healthpb.NewHealthClient(cc)
}

// A lease lost makes gRPC health NOT_SERVING too, until a new lease is
// taken.
func TestGRPCHealthFollowsTheLease(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	reg := prometheus.NewRegistry()
	h := serveCoordinator(t, coordinator.Config{Store: st, LeaseTTL: time.Hour, Registerer: reg}, nil)
	h.store = st
	hc := healthClient(t, h.addr)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hc.Check(h.ctx, &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		return resp.GetStatus()
	}
	require.Eventually(t, func() bool { return check() == healthpb.HealthCheckResponse_SERVING }, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return metricValue(t, reg, "tasker_ready") == 1 }, 20*time.Second, 10*time.Millisecond)
	// A restart elsewhere under the same id replaces the lease; this
	// coordinator's renewal (every third of its hour) is far off, so it
	// stays unready, and gRPC health says so.
	_, err := h.store.LeaseAcquire(h.ctx, &store.LeaseAcquireParams{CoordinatorID: h.coord.ID(), TTL: time.Hour, Now: time.Now().UTC()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return check() == healthpb.HealthCheckResponse_NOT_SERVING }, 20*time.Second, 10*time.Millisecond)
	require.Zero(t, metricValue(t, reg, "tasker_ready"), "the metric follows the same look")
}
