package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/sqlite"
	"github.com/tasker-go/tasker/template"
)

// newTestEngine is a started coordinator on a real SQLite file, for tests
// of the engine's internals; no executor is connected.
func newTestEngine(t *testing.T) *Coordinator {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "tasker.db"), Logger: log})
	require.NoError(t, err)
	c, err := New(Config{Store: st, Logger: log})
	require.NoError(t, err)
	require.NoError(t, c.Start(ctx))
	t.Cleanup(func() {
		_ = c.Stop(ctx)
		_ = st.Close()
	})
	return c
}

// Every move the engine decides is judged by the state tables of package
// state before it is written: a step move the step table refuses, or a
// task move the task table refuses, fails the commit and writes nothing.
func TestMovesRefusedByTheStateTablesAreNeverWritten(t *testing.T) {
	t.Parallel()
	c := newTestEngine(t)
	e := c.engine
	ctx := context.Background()
	tmpl, err := template.Parse([]byte(`
namespace: test
name: tables
version: 1.0.0
steps:
  - name: a
    handler: nobody_hosts_this
  - name: b
    handler: nobody_hosts_this
    depends_on: [a]
`))
	require.NoError(t, err)
	_, _, err = e.templates.register(ctx, tmpl, e.now())
	require.NoError(t, err)
	created, _, err := e.createTask(ctx, &createParams{namespace: "test", name: "tables", context: []byte(`{}`)})
	require.NoError(t, err)
	id := created.task.ID
	before, err := e.store.TransitionList(ctx, &store.TransitionListParams{TaskID: id})
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		move func(c *change)
	}{
		{"step pending to complete", func(c *change) { c.moveStep(1, state.Complete, "no", nil) }},
		{"task pending to complete", func(c *change) { c.moveTask(state.Complete, "no") }},
		{"legal step move, then an illegal one", func(c *change) {
			c.moveStep(1, state.ResolvedManually, "fine", nil)
			c.moveStep(1, state.InProgress, "not from resolved_manually", nil)
		}},
	} {
		_, err := e.withTask(ctx, id, func(tr *taskRun) error {
			ch := e.newChange(tr)
			tc.move(ch)
			return e.commit(ctx, ch)
		})
		var te *state.TransitionError
		require.True(t, errors.As(err, &te), "%s: %v", tc.name, err)
		// The task is reloaded from the store after a refused change.
		require.Eventually(t, func() bool {
			_, err := e.withTask(ctx, id, func(*taskRun) error { return nil })
			return err == nil
		}, 10e9, 1e6)
	}
	after, err := e.store.TransitionList(ctx, &store.TransitionListParams{TaskID: id})
	require.NoError(t, err)
	require.Equal(t, len(before), len(after), "nothing was written")
	steps, err := e.store.StepList(ctx, id)
	require.NoError(t, err)
	require.Equal(t, state.Pending, steps[1].State)
}

func TestFailureReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		attempt, max int
		retryable    bool
		retryIn      time.Duration
		want         string
	}{
		{1, 3, false, 0, "attempt 1 failed permanently, not retried: card declined"},
		{3, 3, true, 0, "attempt 3 of 3 failed, no attempt left: card declined"},
		{1, 3, true, 2 * time.Second, "attempt 1 of 3 failed, retrying in 2s: card declined"},
		{2, 5, true, 1500*time.Millisecond + 300*time.Microsecond, "attempt 2 of 5 failed, retrying in 1.5s: card declined"},
	} {
		require.Equal(t, tc.want, failureReason(tc.attempt, tc.max, tc.retryable, tc.retryIn, "card declined"))
	}
}

// idFloor bounds ids from below by time: every id made at or after t is
// at least idFloor(t), and ids made a millisecond before are below it.
func TestIDFloor(t *testing.T) {
	t.Parallel()
	for range 100 {
		before := uuid.Must(uuid.NewV7()).String()
		at := time.Now()
		for at.UnixMilli() == time.Now().UnixMilli() {
			runtime.Gosched() // the next id must be made in a later millisecond than before's
		}
		after := uuid.Must(uuid.NewV7()).String()
		floor := idFloor(at)
		require.LessOrEqual(t, floor, after)
		require.Less(t, before, idFloor(at.Add(time.Millisecond)))
	}
	require.Equal(t, "00000000-0000", idFloor(time.Unix(0, 0)))
	require.Equal(t, "00000000-03e8", idFloor(time.Unix(1, 0)))
}

// executorMeta writes what encoding/json writes for {"executor": id},
// byte for byte, whether it quotes id itself or leaves it to encoding/json.
func TestExecutorMeta(t *testing.T) {
	for _, id := range []string{"exec-1", "", "coordinator-0 127.0.0.1:7070", "~ !#$%'()*+,-./:;=?@[]^_`{|}",
		`odd "id"\`, "a<b>&c", "tab\there", "del\x7f", "ünï\u2028", "\xff"} {
		want, err := json.Marshal(map[string]string{"executor": id})
		require.NoError(t, err)
		require.Equal(t, string(want), string(executorMeta(id)), "%q", id)
	}
	require.True(t, plainJSON("exec-1"))
	require.False(t, plainJSON("a<b"))
}

func TestByteSize(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 100 << 10: "100.0 KiB",
		1<<20 - 1: "1024.0 KiB", 1 << 20: "1.0 MiB", 6<<20 + 300<<10: "6.3 MiB",
	} {
		require.Equal(t, want, byteSize(n), "%d", n)
	}
}

// A task's ID is never older than its creation time, even when the clock
// enters a new millisecond while the two are made: a created_after bound
// read as a range of IDs (idRange) then keeps the task.
func TestStampIDNotOlderThanTime(t *testing.T) {
	t.Parallel()
	// The clock returns the first instant of the millisecond after the one
	// it was read in, as if the millisecond turned between the two.
	e := &engine{now: func() time.Time {
		ms := time.Now().UnixMilli()
		for time.Now().UnixMilli() == ms {
			runtime.Gosched()
		}
		return time.Now().UTC()
	}}
	for range 20 {
		at, id := e.stamp()
		from, _ := idRange(at, time.Time{}, "", "")
		require.GreaterOrEqual(t, id, from, "task created at %s", at.Format(time.RFC3339Nano))
	}
}
