package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// The event log on SQLite is the transitions table in seq order. seq is a
// rowid taken inside the single writer's transaction, and that
// transaction holds the write lock until it commits, so no transaction can
// commit a smaller seq after a reader has seen a larger one: seq order is
// commit order, and "seq > cursor" resumes exactly. A cursor is the seq in
// base 10.

// eventListQuery reads the floor and the next ?2 entries after seq ?1, with
// their tasks' namespace and name, in one statement and so one snapshot: a
// prune that moves the floor past the cursor deletes nothing this read can
// miss without the read also seeing the new floor. The floor row always
// exists, so an empty page still returns one row (with a NULL seq). Each
// row also carries the log's head, the newest seq (the table's last row is
// never pruned), for a cursor ahead of it.
const eventListQuery = `SELECT f.seq, (SELECT COALESCE(max(seq), 0) FROM transitions), w.seq, w.task_id, w.step_id, w.step_name, w.from_state, w.to_state,
		w.at, w.reason, w.attempt, w.metadata, w.lease_token, k.namespace, k.name
	FROM event_floor f
	LEFT JOIN (SELECT ` + transitionColumns + ` FROM transitions WHERE seq > ?1 ORDER BY seq LIMIT ?2) w ON true
	LEFT JOIN tasks k ON k.id = w.task_id
	WHERE f.id = 1
	ORDER BY w.seq`

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
	if params.After != "" {
		if err := s.checkRestored(params.After, after); err != nil {
			return nil, err
		}
	}
	limit := params.Limit
	if limit <= 0 {
		limit = store.DefaultEventLimit
	}
	if page, ok := s.tail.list(after, params, limit, time.Now()); ok {
		return page, nil
	}
	return s.eventListFile(ctx, params, after, limit)
}

// eventListFile is EventList read from the file.
func (s *Store) eventListFile(ctx context.Context, params *store.EventListParams, after int64, limit int) (*store.EventPage, error) {
	rows, err := s.reader.QueryContext(ctx, eventListQuery, after, limit)
	if err != nil {
		return nil, s.readErr(err, "list events after %d", after)
	}
	defer rows.Close()
	page := &store.EventPage{Next: params.After}
	var floor, head int64
	examined := 0
	for rows.Next() {
		var (
			seq                                sql.NullInt64
			taskID, stepName, from, to, reason sql.NullString
			stepID, metadata, namespace, name  sql.NullString
			at, attempt, leaseToken            sql.NullInt64
		)
		if err := rows.Scan(&floor, &head, &seq, &taskID, &stepID, &stepName, &from, &to, &at, &reason, &attempt, &metadata,
			&leaseToken, &namespace, &name); err != nil {
			return nil, s.readErr(err, "list events after %d", after)
		}
		if !seq.Valid {
			continue
		}
		examined++
		page.Next = formatCursor(seq.Int64)
		tr := &store.Transition{
			Seq: seq.Int64, TaskID: taskID.String, StepID: stepID.String, StepName: stepName.String,
			From: state.State(from.String), To: state.State(to.String), At: fromNanos(at.Int64), Reason: reason.String,
			Attempt: int(attempt.Int64), Metadata: fromNullJSON(metadata), LeaseToken: leaseToken.Int64,
		}
		if !eventMatches(params, namespace.String, name.String, tr) {
			continue
		}
		page.Events = append(page.Events, &store.Event{
			Cursor: page.Next, Namespace: namespace.String, Name: name.String, Transition: tr,
		})
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(err, "list events after %d", after)
	}
	if params.After != "" && after < floor {
		return nil, &store.CursorExpiredError{Cursor: params.After, Oldest: formatCursor(floor)}
	}
	// No cursor this store handed out is ahead of the newest event it
	// wrote (or of the numbers a restore set aside). One that is comes
	// from another store, or from this one before it was restored from a
	// copy that did not mark itself (tasker backup marks its copies): its
	// reader would wait for seqs past it and skip every event below them.
	if newest := max(head, s.seqBase()); after > newest {
		return nil, fmt.Errorf("cursor %q is ahead of the newest event, %s: it comes from another store, "+
			"or from this one before it was restored from a copy not made by tasker backup; "+
			"subscribe without a cursor, or from %s: %w", params.After, formatCursor(newest), formatCursor(newest), store.ErrCursorInvalid)
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

// EventTail implements store.Store: the newest seq, since every later one
// will be larger.
func (s *Store) EventTail(ctx context.Context) (string, error) {
	if s.isClosed() {
		return "", fmt.Errorf("EventTail: %w", store.ErrClosed)
	}
	var seq int64
	if err := s.reader.QueryRowContext(ctx, `SELECT COALESCE(max(seq), 0) FROM transitions`).Scan(&seq); err != nil {
		return "", s.readErr(err, "read the event log's tail")
	}
	return formatCursor(seq), nil
}

// eventPruneDelete deletes, among the entries with seq in (?1, ?2], those of
// tasks finished before ?3 with no step running, keeping each such task's
// last task transition and the newest row of the table (see the migration
// 00006). Each condition is a lookup by key (the task, its running steps
// through steps_in_progress, its newest task transition through
// transitions_task_id_seq), so the statement costs in proportion to the
// entries in the range.
const eventPruneDelete = `DELETE FROM transitions
	WHERE seq > ?1 AND seq <= ?2
	AND seq < (SELECT max(seq) FROM transitions)
	AND EXISTS (SELECT 1 FROM tasks k WHERE k.id = transitions.task_id
		AND k.state IN ('complete', 'error', 'cancelled', 'resolved_manually') AND k.updated_at < ?3)
	AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.task_id = transitions.task_id AND state = 'in_progress')
	AND NOT (step_id IS NULL AND seq = (SELECT t2.seq FROM transitions t2
		WHERE t2.task_id = transitions.task_id AND t2.step_id IS NULL ORDER BY t2.seq DESC LIMIT 1))`

// EventPrune implements store.Store. It runs as one write of the group
// committer, so its batch is bounded by params.Limit.
func (s *Store) EventPrune(ctx context.Context, params *store.EventPruneParams) (*store.EventPruneResult, error) {
	if params == nil || params.Before.IsZero() {
		return nil, errors.New("EventPrune: params.Before is required")
	}
	limit := params.Limit
	if limit <= 0 {
		limit = store.DefaultEventLimit
	}
	before := toNanos(params.Before)
	var res *store.EventPruneResult
	err := s.write(ctx, "EventPrune", func(ctx context.Context, tx *wtx) error {
		res = &store.EventPruneResult{}
		var floor int64
		if err := tx.QueryRowContext(ctx, `SELECT seq FROM event_floor WHERE id = 1`).Scan(&floor); err != nil {
			return fmt.Errorf("read the event floor: %w", err)
		}
		newFloor, examined, full, err := agedPrefix(ctx, tx, floor, limit, before)
		if err != nil {
			return err
		}
		res.Examined, res.More = examined, full
		if examined > 0 {
			r, err := tx.ExecContext(ctx, eventPruneDelete, floor, newFloor, before)
			if err != nil {
				return fmt.Errorf("delete events in (%d, %d]: %w", floor, newFloor, err)
			}
			n, err := r.RowsAffected()
			if err != nil {
				return fmt.Errorf("delete events in (%d, %d]: %w", floor, newFloor, err)
			}
			res.Deleted = int(n)
			if _, err := tx.ExecContext(ctx, `UPDATE event_floor SET seq = ? WHERE id = 1`, newFloor); err != nil {
				return fmt.Errorf("move the event floor to %d: %w", newFloor, err)
			}
			floor = newFloor
			tx.floor = newFloor
		}
		if floor > 0 {
			res.Oldest = formatCursor(floor)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// agedPrefix reads up to limit entries after floor in seq order and returns
// the seq of the last one of the leading run written before before, how
// many that run holds, and whether it filled the limit.
func agedPrefix(ctx context.Context, tx *wtx, floor int64, limit int, before int64) (last int64, n int, full bool, err error) {
	rows, err := tx.QueryContext(ctx, `SELECT seq, at FROM transitions WHERE seq > ? ORDER BY seq LIMIT ?`, floor, limit)
	if err != nil {
		return 0, 0, false, fmt.Errorf("read events after %d: %w", floor, err)
	}
	defer rows.Close()
	last = floor
	for rows.Next() {
		var seq, at int64
		if err := rows.Scan(&seq, &at); err != nil {
			return 0, 0, false, fmt.Errorf("read events after %d: %w", floor, err)
		}
		if at >= before {
			break
		}
		last = seq
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, 0, false, fmt.Errorf("read events after %d: %w", floor, err)
	}
	return last, n, n == limit, nil
}

// parseCursor reads a cursor this driver issued; "" is the log's start.
func parseCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	seq, err := strconv.ParseInt(c, 10, 64)
	if err != nil || seq < 0 {
		return 0, fmt.Errorf("cursor %q: %w", c, store.ErrCursorInvalid)
	}
	return seq, nil
}

func formatCursor(seq int64) string { return strconv.FormatInt(seq, 10) }
