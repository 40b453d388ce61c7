package bench

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestIsPostgres(t *testing.T) {
	t.Parallel()
	for db, want := range map[string]bool{
		"postgres://u@127.0.0.1/db":   true,
		"postgresql://u@127.0.0.1/db": true,
		"bench.db":                    false,
		"sqlite:///tmp/postgres.db":   false,
		"/tmp/postgres://x":           false,
	} {
		require.Equal(t, want, IsPostgres(db), db)
	}
}

func TestWithSearchPath(t *testing.T) {
	t.Parallel()
	got, err := withSearchPath("postgres://u:secret@127.0.0.1:5432/test?sslmode=disable&search_path=public", "tasker_bench_x")
	require.NoError(t, err)
	u, err := url.Parse(got)
	require.NoError(t, err)
	require.Equal(t, "tasker_bench_x", u.Query().Get("search_path"), "replaces any search_path given")
	require.Len(t, u.Query()["search_path"], 1)
	require.Equal(t, "disable", u.Query().Get("sslmode"), "other parameters kept")
	require.Equal(t, "u:secret@127.0.0.1:5432", u.User.String()+"@"+u.Host)
	require.Equal(t, "/test", u.Path)

	_, err = CreateSchema(t.Context(), "bench.db")
	require.ErrorIs(t, err, ErrNotPostgres)
}

// postgresURL returns TASKER_TEST_POSTGRES or skips the test.
func postgresURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("TASKER_TEST_POSTGRES")
	if u == "" {
		t.Skip("TASKER_TEST_POSTGRES is not set")
	}
	if testing.Short() {
		t.Skip("builds the tasker binary")
	}
	return u
}

// schemaTables lists the tables in schema, to see where the coordinators
// put theirs.
func schemaTables(t *testing.T, dbURL, schema string) []string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(context.Background())) }()
	rows, err := conn.Query(t.Context(),
		"SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name", schema)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// TestRunTwoCoordinatorsPostgres runs two real coordinator processes on one
// PostgreSQL schema and loads both.
func TestRunTwoCoordinatorsPostgres(t *testing.T) {
	t.Parallel()
	dbURL := postgresURL(t)
	bin := buildTasker(t)

	schema, err := CreateSchema(t.Context(), dbURL)
	require.NoError(t, err)
	dropped := false
	t.Cleanup(func() {
		if !dropped {
			_ = schema.Drop(context.Background())
		}
	})
	require.Contains(t, schema.URL, "search_path="+schema.Name)

	var output syncBuffer
	var children []*Child
	t.Cleanup(func() {
		for _, c := range children {
			_ = c.Stop(10 * time.Second)
		}
	})
	for _, id := range []string{"bench-test-a", "bench-test-b"} {
		// Sync is a SQLite setting; StartChild leaves it out for PostgreSQL,
		// where the coordinator would ignore it.
		c, err := StartChild(t.Context(), ChildConfig{Binary: bin, DB: schema.URL, Sync: "normal", ID: id, Output: &output})
		require.NoError(t, err, output.String())
		children = append(children, c)
	}

	httpClient := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(httpClient.CloseIdleConnections)
	rep, err := Run(t.Context(), Config{
		Coordinator: children[0].Addr, MetricsURL: children[0].MetricsURL, PID: children[0].PID,
		Coordinators: []Target{{Addr: children[1].Addr, MetricsURL: children[1].MetricsURL, PID: children[1].PID}},
		Store:        "postgres", Schema: schema.Name, HTTPClient: httpClient,
		Shape: "linear4", Tasks: 20, Concurrency: 4, Executors: 2, ExecutorCapacity: 8,
	})
	require.NoError(t, err, output.String())

	require.Equal(t, int64(20), rep.Tasks)
	require.Zero(t, rep.TasksFailed)
	require.Equal(t, int64(80), rep.Steps, "4 steps per task, each run once")
	require.Zero(t, rep.DuplicateDispatches)
	require.Equal(t, 2, rep.Coordinators)
	require.Equal(t, "postgres", rep.Store)
	require.Equal(t, schema.Name, rep.Schema)
	require.Empty(t, rep.Sync)
	require.Len(t, rep.PerCoordinator, 2)
	var created int64
	for i, c := range rep.PerCoordinator {
		require.Equal(t, children[i].Addr, c.Addr)
		require.Equal(t, int64(10), c.TasksCreated, "tasks go to the coordinators in turn")
		created += c.TasksCreated
		require.NotNil(t, c.MeanBatchSize, "each coordinator committed its own tasks' writes")
		require.GreaterOrEqual(t, *c.MeanBatchSize, 1.0)
		require.NotNil(t, c.CPUSeconds)
		require.NotNil(t, c.PeakRSSMB)
	}
	require.Equal(t, rep.Tasks, created)
	require.NotNil(t, rep.MeanBatchSize, "summed over both")
	require.NotNil(t, rep.CPUSecondsPer1kSteps)
	require.NotNil(t, rep.PeakRSSMB)
	require.Equal(t, max(*rep.PerCoordinator[0].PeakRSSMB, *rep.PerCoordinator[1].PeakRSSMB), *rep.PeakRSSMB)

	for _, c := range children {
		require.NoError(t, c.Stop(10*time.Second), output.String())
	}
	require.Contains(t, schemaTables(t, dbURL, schema.Name), "tasks", "the coordinators kept their tables in the run's schema")
	require.NoError(t, schema.Drop(t.Context()))
	dropped = true
	require.Empty(t, schemaTables(t, dbURL, schema.Name), "nothing is left after Drop")
}
