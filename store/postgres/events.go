package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// The event log on PostgreSQL is the transitions table in (xact, seq)
// order, where xact is the id of the transaction that wrote the row (see
// migrations/00006_events.sql), and a read returns only rows whose xact is
// below its snapshot's xmin, the oldest transaction still running.
//
// Why that is sound: a transaction below xmin has ended, so its rows are
// visible to the snapshot if it committed, and it will never write again.
// Every row not yet visible belongs to a transaction at or above xmin, so it
// sorts after everything the read returned, and a later read from the last
// cursor finds it. Nothing is skipped however commits interleave across
// connections or coordinators, and nothing is returned twice, since cursors
// only move forward in a total order.
//
// What the order means: a transaction that committed before another began
// got the smaller id, so its events come first; a task's writes are
// serialised (one owner, one write in flight, and takeovers wait for the
// old owner's row locks), so its events keep their commit order. Two
// transactions that overlapped are ordered by id, not by which committed
// first: knowing that would take a counter bumped under a lock at every
// commit, serialising the group commits of every coordinator. The price
// of the horizon is latency, not loss: a transaction that stays open holds
// back the events of those that began after it until it ends.
//
// Ids are the cluster's, so a store restored from a dump numbers its rows'
// xact from a base above every stored id, and the horizon moves with it
// (see restore.go and migrations/00023_event_restores.sql).
//
// A cursor is "xact.seq" in base 10.

// position is a place in the log.
type position struct{ xact, seq int64 }

func (p position) String() string {
	return strconv.FormatInt(p.xact, 10) + "." + strconv.FormatInt(p.seq, 10)
}

func (p position) less(q position) bool {
	return p.xact < q.xact || p.xact == q.xact && p.seq < q.seq
}

// parseCursor reads a cursor this driver issued; "" is the log's start.
func parseCursor(c string) (position, error) {
	if c == "" {
		return position{}, nil
	}
	x, s, ok := strings.Cut(c, ".")
	xact, errX := strconv.ParseInt(x, 10, 64)
	seq, errS := strconv.ParseInt(s, 10, 64)
	if !ok || errX != nil || errS != nil || xact < 0 || seq < 0 {
		return position{}, fmt.Errorf("cursor %q: %w", c, store.ErrCursorInvalid)
	}
	return position{xact, seq}, nil
}

// eventListSQL reads the floor, the horizon and the next $3 entries after
// ($1, $2) below the horizon, with their tasks' namespace and name, in one
// statement and so one snapshot: the horizon is that snapshot's xmin, and
// a prune that moved the floor past the cursor is seen together with what
// it deleted. It walks transitions_xact_seq from the cursor and stops after
// $3 entries, and looks each entry's task up by key, so it costs in
// proportion to what it returns. (OFFSET 0 keeps the look up a subquery run
// per entry: as a join, the planner, costing index lookups as reads from
// disk, read and hashed all of tasks instead, 43 ms a page of 500 against
// 2 ms, measured on a busy database of 14,000 tasks.) The floor row
// always exists, so an empty page still returns one row, with NULL entry
// columns.
const eventListSQL = `WITH h AS MATERIALIZED (
	SELECT txid_snapshot_xmin(txid_current_snapshot()) + $4::bigint AS horizon, xact, seq FROM event_floor WHERE id = 1
), w AS (
	SELECT xact, ` + transitionColumns + ` FROM transitions
	WHERE (xact, seq) > ($1::bigint, $2::bigint) AND xact < (SELECT horizon FROM h)
	ORDER BY xact, seq
	LIMIT $3
)
SELECT h.xact, h.seq, h.horizon, w.xact, w.seq, w.task_id, w.step_id, w.step_name, w.from_state, w.to_state, w.at,
	w.reason, w.attempt, w.metadata, w.lease_token, k.namespace, k.name
FROM h LEFT JOIN w ON true
	LEFT JOIN LATERAL (SELECT namespace, name FROM tasks WHERE id = w.task_id OFFSET 0) k ON true
ORDER BY w.xact, w.seq`

// EventList implements store.Store.
func (s *Store) EventList(ctx context.Context, params *store.EventListParams) (*store.EventPage, error) {
	if params == nil {
		return nil, errors.New("EventList: params are nil")
	}
	if s.isClosed() {
		return nil, fmt.Errorf("EventList: %w", store.ErrClosed)
	}
	after, err := parseCursor(params.After)
	if err != nil {
		return nil, err
	}
	limit := params.Limit
	if limit <= 0 {
		limit = store.DefaultEventLimit
	}
	// Planned afresh for each page (an unnamed statement; 0.3 ms), not
	// once and cached: a generic plan made while tasks was a page or two
	// would read it whole for each entry, and keep doing so as it grew.
	if err := s.checkRestored(params.After, after); err != nil {
		return nil, err
	}
	rows, err := s.reader.Query(ctx, eventListSQL, pgx.QueryExecModeExec, after.xact, after.seq, limit, s.xactBase)
	if err != nil {
		return nil, s.readErr(err, "list events after %s", after)
	}
	defer rows.Close()
	page := &store.EventPage{Next: params.After}
	var (
		floor   position
		horizon int64
	)
	examined := 0
	for rows.Next() {
		var (
			xact, seq, at, leaseToken                  *int64
			attempt                                    *int32
			taskID, stepID, stepName, from, to, reason *string
			metadata, namespace, name                  *string
		)
		if err := rows.Scan(&floor.xact, &floor.seq, &horizon, &xact, &seq, &taskID, &stepID, &stepName, &from, &to, &at,
			&reason, &attempt, &metadata, &leaseToken, &namespace, &name); err != nil {
			return nil, s.readErr(err, "list events after %s", after)
		}
		if seq == nil {
			continue
		}
		examined++
		page.Next = position{*xact, *seq}.String()
		tr := &store.Transition{
			Seq: *seq, TaskID: *taskID, StepID: fromNullString(stepID), StepName: *stepName,
			From: state.State(*from), To: state.State(*to), At: fromNanos(*at), Reason: *reason,
			Attempt: int(*attempt), Metadata: fromNullJSON(metadata), LeaseToken: *leaseToken,
		}
		ns, nm := fromNullString(namespace), fromNullString(name)
		if !eventMatches(params, ns, nm, tr) {
			continue
		}
		page.Events = append(page.Events, &store.Event{Cursor: page.Next, Namespace: ns, Name: nm, Transition: tr})
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(err, "list events after %s", after)
	}
	if params.After != "" && after.less(floor) {
		return nil, &store.CursorExpiredError{Cursor: params.After, Oldest: floor.String()}
	}
	// Every cursor handed out is at most the tail under the horizon of
	// the read that gave it (an event's is below that horizon, EventTail's
	// is the tail), and the horizon only grows. One at or past this read's
	// horizon comes from another store, or from this one before it was
	// restored by other means than the ones that mark a restore: its
	// reader would skip every event written below it.
	if newest := s.tailAt(horizon); newest.less(after) {
		return nil, fmt.Errorf("cursor %q is ahead of the newest event, %s: it comes from another store, "+
			"or from this one before it was restored by other means than tasker's; "+
			"subscribe without a cursor, or from %s: %w", params.After, newest, newest, store.ErrCursorInvalid)
	}
	page.More = examined == limit
	return page, nil
}

// eventMatches applies EventList's filters to one entry.
func eventMatches(p *store.EventListParams, namespace, name string, tr *store.Transition) bool {
	switch {
	case p.Namespace != "" && namespace != p.Namespace, p.Name != "" && name != p.Name:
		return false
	case p.Kind == store.EventKindTask:
		return tr.StepID == ""
	case p.Kind == store.EventKindStep:
		return tr.StepID != ""
	}
	return true
}

// EventTail implements store.Store: just below the horizon. Every row of a
// transaction below it is already visible; every row still to commit sorts
// after it. Rows of transactions at or above the horizon that had already
// committed sort after it too, which is why the tail may lead to a few
// events committed just before the call.
func (s *Store) EventTail(ctx context.Context) (string, error) {
	if s.isClosed() {
		return "", fmt.Errorf("EventTail: %w", store.ErrClosed)
	}
	var horizon int64
	if err := s.reader.QueryRow(ctx, `SELECT txid_snapshot_xmin(txid_current_snapshot()) + $1::bigint`, s.xactBase).Scan(&horizon); err != nil {
		return "", s.readErr(err, "read the event log's tail")
	}
	return s.tailAt(horizon).String(), nil
}

// tailAt is the log's tail under a read's horizon: just below it.
func (s *Store) tailAt(horizon int64) position {
	// Right after a restore the horizon may still be below the new era's
	// first id (a transaction older than the restore is open somewhere in
	// the cluster); the tail is then the era's start, below every row of
	// the era and above every restored one.
	tail := position{horizon - 1, math.MaxInt64}
	if start := s.eraStart(); tail.less(start) {
		tail = start
	}
	return tail
}

// eventPruneAgedSQL reads the entries after the floor, below the horizon,
// in log order: EventPrune keeps the leading run of them written before the
// cutoff.
const eventPruneAgedSQL = `SELECT xact, seq, at FROM transitions
	WHERE (xact, seq) > ($1::bigint, $2::bigint) AND xact < txid_snapshot_xmin(txid_current_snapshot()) + $4::bigint
	ORDER BY xact, seq
	LIMIT $3`

// eventPruneDeleteSQL deletes, among the entries with the seqs in $1 (the
// aged run EventPrune read), those of tasks finished before $2 with no step
// running, keeping each such task's last task transition. Each condition
// is a lookup by key (the entries by seq, first and on their own, then the
// task, its steps by task id, its newest task transition through
// transitions_task_id_seq), so the statement costs in proportion to the
// entries given.
const eventPruneDeleteSQL = `WITH given AS MATERIALIZED (
	SELECT seq, task_id, step_id FROM transitions WHERE seq = ANY($1::bigint[])
)
DELETE FROM transitions t USING given g
	WHERE t.seq = g.seq
	AND EXISTS (SELECT 1 FROM tasks k WHERE k.id = g.task_id
		AND k.state IN ('complete', 'error', 'cancelled', 'resolved_manually') AND k.updated_at < $2::bigint)
	AND NOT EXISTS (SELECT 1 FROM steps WHERE steps.task_id = g.task_id AND state = 'in_progress')
	AND NOT (g.step_id IS NULL AND g.seq = (SELECT t2.seq FROM transitions t2
		WHERE t2.task_id = g.task_id AND t2.step_id IS NULL ORDER BY t2.seq DESC LIMIT 1))`

// EventPrune implements store.Store. It runs in a transaction of its own,
// outside the group committer, so a batch of deletes never delays the
// engine's writes; the floor row's lock serialises coordinators pruning at
// once.
func (s *Store) EventPrune(ctx context.Context, params *store.EventPruneParams) (*store.EventPruneResult, error) {
	if params == nil || params.Before.IsZero() {
		return nil, errors.New("EventPrune: params.Before is required")
	}
	if s.isClosed() {
		return nil, fmt.Errorf("EventPrune: %w", store.ErrClosed)
	}
	limit := params.Limit
	if limit <= 0 {
		limit = store.DefaultEventLimit
	}
	before := toNanos(params.Before)
	res := &store.EventPruneResult{}
	err := pgx.BeginFunc(ctx, s.reader, func(tx pgx.Tx) error {
		var floor position
		if err := tx.QueryRow(ctx, `SELECT xact, seq FROM event_floor WHERE id = 1 FOR UPDATE`).Scan(&floor.xact, &floor.seq); err != nil {
			return fmt.Errorf("lock the event floor: %w", err)
		}
		rows, err := tx.Query(ctx, eventPruneAgedSQL, floor.xact, floor.seq, limit, s.xactBase)
		if err != nil {
			return fmt.Errorf("read events after %s: %w", floor, err)
		}
		last, aged := floor, true
		var seqs []int64
		for rows.Next() {
			var p position
			var at int64
			if err := rows.Scan(&p.xact, &p.seq, &at); err != nil {
				rows.Close()
				return fmt.Errorf("read events after %s: %w", floor, err)
			}
			if aged = aged && at < before; aged {
				last = p
				seqs = append(seqs, p.seq)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read events after %s: %w", floor, err)
		}
		res.Examined = len(seqs)
		res.More = res.Examined == limit
		if res.Examined > 0 {
			tag, err := tx.Exec(ctx, eventPruneDeleteSQL, seqs, before)
			if err != nil {
				return fmt.Errorf("delete events in (%s, %s]: %w", floor, last, err)
			}
			res.Deleted = int(tag.RowsAffected())
			if _, err := tx.Exec(ctx, `UPDATE event_floor SET xact = $1, seq = $2 WHERE id = 1`, last.xact, last.seq); err != nil {
				return fmt.Errorf("move the event floor to %s: %w", last, err)
			}
			floor = last
		}
		if floor != (position{}) {
			res.Oldest = floor.String()
		}
		return nil
	})
	if err != nil {
		return nil, s.readErr(err, "prune events before %s", params.Before)
	}
	return res, nil
}
