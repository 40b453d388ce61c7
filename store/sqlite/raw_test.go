package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// BenchmarkRawStatements measures the statements rawWriter runs, 64 rows
// of each per op inside one transaction that is rolled back, so what is
// measured is the statements' own cost (binding, stepping, the b-tree
// work) without the commit's. task-inserts and task-updates go through
// createTask and advanceTask, which add little to their one statement.
func BenchmarkRawStatements(b *testing.B) {
	const rows = 64
	ctx := context.Background()
	s := openStore(b, Config{})
	at := time.Unix(1_700_000_000, 0)
	names := make([]string, rows)
	for i := range names {
		names[i] = fmt.Sprintf("step-%d", i)
	}
	p := storetest.TaskParams("ns", at, names...)
	_, _, err := s.TaskCreate(ctx, p)
	require.NoError(b, err)

	inTx := func(b *testing.B, work func(w *wtx) error) {
		b.Helper()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.wconn.ExecContext(ctx, sqlBegin); err != nil {
				b.Fatal(err)
			}
			w := &wtx{Conn: s.wconn, stmts: s.stmts, buckets: s.buckets, raw: s.raw}
			if err := work(w); err != nil {
				b.Fatal(err)
			}
			if err := s.rollback(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
	}

	b.Run("transitions", func(b *testing.B) {
		pending := make([]pendingTransition, rows)
		for i := range pending {
			pending[i] = pendingTransition{taskID: p.Task.ID, tr: &store.Transition{
				TaskID: p.Task.ID, StepID: p.Steps[i].ID, StepName: p.Steps[i].Name,
				From: state.Pending, To: state.InProgress, At: at, Reason: "dispatched", Attempt: 1,
			}}
		}
		inTx(b, func(w *wtx) error { return flushTransitions(ctx, w, pending) })
	})

	b.Run("step-updates", func(b *testing.B) {
		inTx(b, func(w *wtx) error {
			for _, st := range p.Steps {
				c := &store.StepChange{StepID: st.ID, StepName: st.Name, From: state.Pending, To: state.InProgress, Attempts: 1}
				if _, err := updateStep(ctx, w, p.Task.ID, at.UnixNano(), c, nil, 0); err != nil {
					return err
				}
			}
			return nil
		})
	})

	b.Run("task-inserts", func(b *testing.B) {
		tasks := make([]*store.TaskCreateParams, rows)
		for i := range tasks {
			tasks[i] = storetest.TaskParams("ns", at)
		}
		inTx(b, func(w *wtx) error {
			for _, t := range tasks {
				if _, _, err := createTask(ctx, w, t); err != nil {
					return err
				}
			}
			return nil
		})
	})

	b.Run("task-updates", func(b *testing.B) {
		ids := make([]string, rows)
		for i := range ids {
			t := storetest.TaskParams("ns", at)
			_, _, err := s.TaskCreate(ctx, t)
			require.NoError(b, err)
			ids[i] = t.Task.ID
		}
		inTx(b, func(w *wtx) error {
			for _, id := range ids {
				_, err := advanceTask(ctx, w, &store.TaskAdvanceParams{TaskID: id, At: at,
					Task: &store.TaskChange{From: state.Pending, To: state.InProgress}})
				if err != nil {
					return err
				}
			}
			return nil
		})
	})

	b.Run("step-inserts", func(b *testing.B) {
		steps := make([]*store.Step, rows)
		for i := range steps {
			steps[i] = &store.Step{ID: uuid.Must(uuid.NewV7()).String(), TaskID: p.Task.ID, Name: "new-" + names[i],
				Position: rows + i, Handler: "h", State: state.Pending, MaxAttempts: 3, Retryable: true, UpdatedAt: at}
		}
		inTx(b, func(w *wtx) error { return insertSteps(ctx, w, p.Task.ID, steps) })
	})
}
