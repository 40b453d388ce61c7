package coordinator_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/postgres"
)

// openPostgres opens a store on TASKER_TEST_POSTGRES in the named schema
// (skipping without the variable), closed when the test ends; the schema is
// dropped after every store on it is closed.
func openPostgres(t *testing.T, schema string) *postgres.Store {
	t.Helper()
	url := os.Getenv("TASKER_TEST_POSTGRES")
	if url == "" {
		t.Skip("PostgreSQL tests skipped: set TASKER_TEST_POSTGRES")
	}
	st, err := postgres.Open(context.Background(), postgres.Config{URL: url, Schema: schema, MaxConns: 4, Logger: testLogger(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newPostgresSchema(t *testing.T) string {
	t.Helper()
	url := os.Getenv("TASKER_TEST_POSTGRES")
	if url == "" {
		t.Skip("PostgreSQL tests skipped: set TASKER_TEST_POSTGRES")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "tasker_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		defer func() { _ = conn.Close(ctx) }()
		_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		require.NoError(t, err)
	})
	return schema
}

// TestSubscribeEventsOnAnotherCoordinatorPostgres: two coordinators share
// a PostgreSQL schema; every task runs on A (the only one with an
// executor) while a subscriber follows B, which commits nothing itself, so
// only its poll of the shared log can tell it. The subscriber gets every
// transition once, each task's in order, and its cursor resumes on A.
func TestSubscribeEventsOnAnotherCoordinatorPostgres(t *testing.T) {
	t.Parallel()
	schema := newPostgresSchema(t)
	stA, stB := openPostgres(t, schema), openPostgres(t, schema)
	a := serveCoordinator(t, coordinator.Config{Store: stA, ID: "a"}, nil)
	b := serveCoordinator(t, coordinator.Config{Store: stB, ID: "b"}, nil)
	runExecutor(a, executor.Config{ID: "exec-a", Capacity: 16}, listen(t), nil)
	a.apply(fmt.Sprintf(eventsTemplate, "events", "pair"))

	sub := newSubscriber(t)
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	stream, err := sub.open(ctx, b.client, &coordinatorv1.SubscribeEventsRequest{Follow: true})
	require.NoError(t, err)
	var ids []string
	for i := range 100 {
		ids = append(ids, a.create("events", "pair", map[string]any{"i": i}).GetId())
	}
	sub.enough = func() bool { return len(sub.finished) == len(ids) }
	require.NoError(t, sub.take(stream, 1<<30))
	cancel()

	// Nothing more on A after B's cursor.
	sub.enough = nil
	more, err := sub.open(a.ctx, a.client, &coordinatorv1.SubscribeEventsRequest{})
	require.NoError(t, err)
	require.NoError(t, sub.take(more, 1<<30))

	byTask := map[string][]int64{}
	seen := map[string]bool{}
	for _, ev := range sub.events {
		require.False(t, seen[ev.GetCursor()], "cursor %s twice", ev.GetCursor())
		seen[ev.GetCursor()] = true
		byTask[ev.GetTransition().GetTaskId()] = append(byTask[ev.GetTransition().GetTaskId()], ev.GetTransition().GetSeq())
	}
	total := 0
	for _, id := range ids {
		trs, err := stA.TransitionList(a.ctx, &store.TransitionListParams{TaskID: id})
		require.NoError(t, err)
		var want []int64
		for _, tr := range trs {
			want = append(want, tr.Seq)
		}
		require.Equal(t, want, byTask[id], "task %s", id)
		total += len(want)
	}
	require.Len(t, sub.events, total)
}
