package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPostgresOutage cuts a coordinator off from PostgreSQL, through a TCP
// proxy, for many lease lives while steps run, as a database failover or
// a network fault does, then restores the path: the results that came in
// meanwhile are held through the lease's loss and applied once the
// database answers, so each step completes on the attempt that ran (a
// retry_limit of 1 leaves no second one).
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	baseURL := os.Getenv(envTestPostgres)
	if baseURL == "" {
		t.Skipf("%s is not set: give it a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to cut a coordinator off from it", envTestPostgres)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	schema := fmt.Sprintf("tasker_outage_%d", time.Now().UnixNano())
	multiCreateSchema(ctx, t, baseURL, schema)
	u, err := url.Parse(baseURL)
	require.NoError(t, err)
	db := startProxy(t, u.Host)
	u.Host = db.addr()
	dbURL, err := withSearchPath(u.String(), schema)
	require.NoError(t, err)

	coordAddr, httpAddr := freeAddr(t), freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coordAddr, "--http-listen", httpAddr, "--db", dbURL,
		"--lease-ttl", "2s", "--executor-grace", "1s", "--log-level", "debug")
	c := &cluster{t: t, coord: coordAddr}
	require.Eventually(t, func() bool {
		_, _, err := c.run("executors")
		return err == nil
	}, 60*time.Second, 100*time.Millisecond, "coordinator did not start")
	started, release := startGatedExecutor(t, coordAddr)
	c.waitExecutors(1)

	ids := createGatedTasks(t, c, "outage", 3)
	waitStarted(t, started, len(ids))

	db.partition()
	release()
	// With no database every write fails: all three are held.
	metrics := heldResultsThroughLeaseLoss(t, httpAddr, len(ids))

	db.heal()
	requireRanOnce(t, c, ids)
	requireNothingHeld(t, metrics)
}
