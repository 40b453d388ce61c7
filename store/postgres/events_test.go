package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/storetest"
)

// eventsFixture is a store with one task, and two plain sessions on its
// schema standing in for two coordinators' committers, which write
// transitions of that task in transactions the test opens and commits in
// the order it chooses.
type eventsFixture struct {
	t      *testing.T
	ctx    context.Context
	store  *Store
	taskID string
	a, b   *pgx.Conn
}

func newEventsFixture(t *testing.T) *eventsFixture {
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	p := storetest.TaskParams("ns", time.Now(), "a")
	_, _, err := s.TaskCreate(t.Context(), p)
	require.NoError(t, err)
	return &eventsFixture{t: t, ctx: t.Context(), store: s, taskID: p.Task.ID, a: adminConn(t, schema), b: adminConn(t, schema)}
}

// insert writes one transition in tx and returns its seq and the id of the
// transaction it was recorded under.
func (f *eventsFixture) insert(tx pgx.Tx, reason string) (seq, xact int64) {
	f.t.Helper()
	err := tx.QueryRow(f.ctx, `INSERT INTO transitions (task_id, step_name, from_state, to_state, at, reason, attempt)
		VALUES ($1, '', 'pending', 'pending', 1, $2, 0) RETURNING seq, xact`, f.taskID, reason).Scan(&seq, &xact)
	require.NoError(f.t, err)
	return seq, xact
}

func (f *eventsFixture) begin(conn *pgx.Conn) pgx.Tx {
	f.t.Helper()
	tx, err := conn.Begin(f.ctx)
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// follow reads the log on from cursor until it has seen want events in
// all, and returns the reasons of the events read and the new cursor.
func (f *eventsFixture) follow(cursor string, want int) ([]string, string) {
	f.t.Helper()
	var reasons []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		page, err := f.store.EventList(f.ctx, &store.EventListParams{After: cursor})
		require.NoError(f.t, err)
		for _, ev := range page.Events {
			reasons = append(reasons, ev.Transition.Reason)
		}
		cursor = page.Next
		if len(reasons) >= want && !page.More {
			return reasons, cursor
		}
		require.True(f.t, time.Now().Before(deadline), "got %v, want %d events", reasons, want)
		time.Sleep(time.Millisecond)
	}
}

// requireNothingNew reads from cursor and checks the log delivers nothing
// and keeps the cursor where it is.
func (f *eventsFixture) requireNothingNew(cursor string) {
	f.t.Helper()
	page, err := f.store.EventList(f.ctx, &store.EventListParams{After: cursor})
	require.NoError(f.t, err)
	require.Empty(f.t, page.Events)
	require.Equal(f.t, cursor, page.Next)
}

// TestEventListHoldsBackWhatAnOpenTransactionMayPrecede is the case naive
// "seq > cursor" reading gets wrong: A takes the smaller seq, B the larger
// one and commits first. A reader that moved past B's seq would never see
// A's row. The log holds B's row back until A ends, then delivers both,
// once each, in (xact, seq) order, and a cursor taken while A was open
// resumes without a gap.
func TestEventListHoldsBackWhatAnOpenTransactionMayPrecede(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	start, err := f.store.EventTail(f.ctx)
	require.NoError(t, err)

	txA := f.begin(f.a)
	seqA, xactA := f.insert(txA, "A")
	txB := f.begin(f.b)
	seqB, xactB := f.insert(txB, "B")
	require.Less(t, seqA, seqB)
	require.Less(t, xactA, xactB)
	require.NoError(t, txB.Commit(f.ctx))

	// B is committed, but A may still commit a row that sorts before it.
	f.requireNothingNew(start)
	require.NoError(t, txA.Commit(f.ctx))

	got, cursor := f.follow(start, 2)
	require.Equal(t, []string{"A", "B"}, got)
	f.requireNothingNew(cursor)
}

// TestEventListOrdersOverlappingTransactionsByID is the other interleaving:
// B's transaction began first (it has the smaller id) but takes its seq
// last and commits last. A's row, committed first, waits for B, and the
// log lists B's row first: overlapping transactions are ordered by id, not
// by commit, and nothing is lost or repeated either way.
func TestEventListOrdersOverlappingTransactionsByID(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	start, err := f.store.EventTail(f.ctx)
	require.NoError(t, err)

	txB := f.begin(f.b)
	var xactB int64
	require.NoError(t, txB.QueryRow(f.ctx, "SELECT txid_current()").Scan(&xactB))
	txA := f.begin(f.a)
	seqA, xactA := f.insert(txA, "A")
	require.NoError(t, txA.Commit(f.ctx))
	require.Less(t, xactB, xactA)

	f.requireNothingNew(start)
	seqB, _ := f.insert(txB, "B")
	require.Less(t, seqA, seqB)
	require.NoError(t, txB.Commit(f.ctx))

	got, cursor := f.follow(start, 2)
	require.Equal(t, []string{"B", "A"}, got)
	f.requireNothingNew(cursor)
}

// TestEventListTailSkipsHistoryNotOpenTransactions: a tail taken while a
// transaction is open still leads to that transaction's rows.
func TestEventListTailSkipsHistoryNotOpenTransactions(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	old := f.begin(f.a)
	f.insert(old, "history")
	require.NoError(t, old.Commit(f.ctx))
	_, _ = f.follow("", 1) // the history is below the horizon now

	open := f.begin(f.a)
	f.insert(open, "open")
	tail, err := f.store.EventTail(f.ctx)
	require.NoError(t, err)
	require.NoError(t, open.Commit(f.ctx))
	got, _ := f.follow(tail, 1)
	require.Equal(t, []string{"open"}, got)
}

// TestEventPlans pins the event log's reads and the prune's delete to
// their indexes, so they cost in proportion to the entries they touch.
func TestEventPlans(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	storetest.SeedTasks(t, s, "ns", 20)
	conn := adminConn(t, schema)
	// A history of many tasks, so the planner weighs real tables.
	_, err := conn.Exec(ctx, `INSERT INTO tasks (id, namespace, name, version, state, context, created_at, updated_at)
		SELECT 'task-' || i, 'ns', 'linear', '1.0.0', 'complete', '{}', i, i FROM generate_series(0, 2000) i`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `INSERT INTO transitions (task_id, step_name, from_state, to_state, at, reason, attempt)
		SELECT 'task-' || (i / 10), '', 'pending', 'in_progress', i, '', 0 FROM generate_series(1, 20000) i`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET enable_seqscan = off")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "ANALYZE")
	require.NoError(t, err)
	plan := func(query string, args ...any) string {
		t.Helper()
		return explainPlan(t, conn, query, args...)
	}
	list := plan(eventListSQL, 0, 0, 100, 0)
	require.Contains(t, list, "Index Scan using transitions_xact_seq", list)
	require.Contains(t, list, "Index Scan using tasks_pkey", list)
	aged := plan(eventPruneAgedSQL, 0, 0, 100, 0)
	require.Contains(t, aged, "transitions_xact_seq", aged)
	require.NotContains(t, aged, "Sort", aged)
	del := plan(eventPruneDeleteSQL, []int64{1, 2}, 1)
	require.Contains(t, del, "transitions_pkey", del)
	require.Contains(t, del, "Index Cond: (id = g.task_id)", del)
	require.NotContains(t, del, "Seq Scan", del)
	require.Regexp(t, `Index (Only )?Scan using (steps_task_id_position|steps_task_id_name_key) on steps`, del)
	require.Contains(t, del, "transitions_task_id_seq", del)
}

// TestEventListIsNotCachedAsAGenericPlan: EventList's statement reaches the
// reader as an unnamed one, planned for each page, so no reader session
// holds a plan for it that was made while the tables were small.
func TestEventListIsNotCachedAsAGenericPlan(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, Config{Schema: newSchema(t)})
	storetest.SeedTasks(t, s, "ns", 20)
	// pgx prepares a cached statement at its first use, and PostgreSQL
	// chooses a generic plan after five runs; ten pages cover both.
	for range 10 {
		_, err := s.EventList(ctx, &store.EventListParams{Limit: 5})
		require.NoError(t, err)
	}
	conns := s.reader.AcquireAllIdle(ctx)
	require.NotEmpty(t, conns)
	for _, c := range conns {
		var prepared int
		// The pattern is spelled in pieces so this statement, prepared
		// too, does not match itself.
		err := c.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements
			WHERE statement LIKE '%' || 'FROM event' || '_floor WHERE id' || '%'`).Scan(&prepared)
		c.Release()
		require.NoError(t, err)
		require.Zero(t, prepared, "a reader session holds EventList's statement prepared")
	}
}

// TestEventListLooksTasksUpByKey: a page's entries find their tasks through
// the primary key, one look up each, even where reading all of tasks looks
// cheaper to the planner (two thousand tasks with an entry each, a page of
// 500).
func TestEventListLooksTasksUpByKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema := newSchema(t)
	s := openStore(t, Config{Schema: schema})
	storetest.SeedTasks(t, s, "ns", 2000)
	conn := adminConn(t, schema)
	_, err := conn.Exec(ctx, `INSERT INTO transitions (task_id, step_name, from_state, to_state, at, reason, attempt)
		SELECT id, '', 'pending', 'in_progress', 1, 'seeded', 0 FROM tasks`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "ANALYZE")
	require.NoError(t, err)
	plan := explainPlan(t, conn, eventListSQL, int64(0), int64(0), 500, int64(0))
	require.Contains(t, plan, "transitions_xact_seq", plan)
	require.Contains(t, plan, "tasks_pkey", plan)
	require.NotContains(t, plan, "Seq Scan on tasks", plan)
}

// A cursor at or past the horizon (and past the era's start) is refused,
// not waited on: no cursor the store handed out is, so it comes from
// another store, or from before a restore that left no mark, and read as
// a position it would skip every event written below it.
func TestEventListRefusesCursorsAheadOfTheLog(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	commit := func(reason string) {
		t.Helper()
		tx := f.begin(f.a)
		f.insert(tx, reason)
		require.NoError(t, tx.Commit(f.ctx))
	}
	commit("first")
	got, last := f.follow("", 1)
	require.Equal(t, []string{"first"}, got)
	tail, err := f.store.EventTail(f.ctx)
	require.NoError(t, err)
	for _, c := range []string{last, tail} {
		_, err := f.store.EventList(f.ctx, &store.EventListParams{After: c})
		require.NoError(t, err, "cursor %s, handed out", c)
	}
	pos, err := parseCursor(tail)
	require.NoError(t, err)
	for _, ahead := range []position{{pos.xact + 1, 0}, {pos.xact + 1000, 7}} {
		_, err := f.store.EventList(f.ctx, &store.EventListParams{After: ahead.String()})
		require.ErrorIs(t, err, store.ErrCursorInvalid, "cursor %s", ahead)
		require.ErrorContains(t, err, "ahead of the newest event")
	}
	// Later commits move the horizon on; what the store hands out then
	// is taken, and reads on from where the first cursor left off.
	commit("second")
	got, _ = f.follow(last, 1)
	require.Equal(t, []string{"second"}, got)
	tail, err = f.store.EventTail(f.ctx)
	require.NoError(t, err)
	_, err = f.store.EventList(f.ctx, &store.EventListParams{After: tail})
	require.NoError(t, err)
}
