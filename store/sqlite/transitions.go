package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/tasker-go/tasker/store"
)

// Transitions are the most numerous rows a batch writes (one per step or
// task change), so they are not inserted one statement at a time as the
// requests run: each request collects its own (insertTransition), and the
// batch inserts those of the requests that stand in a few multi-row
// statements just before it commits (flushTransitions).
//
// Seq is assigned there, explicitly and exactly as SQLite would have
// assigned the rowids one row at a time: the batch reads the largest seq in
// the table (it holds the write lock, so no other writer can add one) and
// numbers its transitions on from it, consecutively, in request order and,
// within a request, in the order it stored them. So seq order is still the
// order the writes were applied in, and still commit order (see events.go).
// EventPrune never deletes the row with the largest seq, so the numbers of
// deleted rows are never handed out again.

// transitionRowColumns is the number of values one transition row binds.
const transitionRowColumns = 11

// transitionInserts are the prepared multi-row INSERTs: entry k inserts
// 2^k rows. A batch's transitions go in chunks of these sizes, largest
// first, so any count takes at most one statement per size, and every
// statement is prepared once, at Open. The largest binds
// 256 × 11 = 2,816 values, well under SQLite's limit of 32,766.
var transitionInserts = func() (texts [9]string) {
	for k := range texts {
		texts[k] = transitionInsertText(1 << k)
	}
	return texts
}()

func transitionInsertText(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO transitions
		(seq, task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token)
		VALUES `)
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	return b.String()
}

// pendingTransition is a transition stored by a request and not yet
// inserted.
type pendingTransition struct {
	taskID string
	// key is the task's namespace and name when the request knows them
	// (it created the task), for the event tail; empty otherwise.
	key taskKey
	tr  *store.Transition
}

// insertTransition stores tr under taskID as part of the request tx runs.
// The row is inserted, and tr.Seq set, when the batch commits; nothing in a
// request reads the transitions it wrote, and the caller reads tr only once
// its write's outcome is delivered, after the commit.
func insertTransition(tx *wtx, taskID string, tr *store.Transition) {
	tx.transitions = append(tx.transitions, pendingTransition{taskID: taskID, tr: tr})
}

// flushTransitions inserts the transitions of a batch's standing requests,
// in order, and sets their Seq (see the comment at the top of this file).
func flushTransitions(ctx context.Context, tx *wtx, pending []pendingTransition) error {
	if len(pending) == 0 {
		return nil
	}
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(max(seq), 0) FROM transitions`).Scan(&last); err != nil {
		return fmt.Errorf("read the last transition's seq: %w", err)
	}
	// A store restored from a backup numbers its new events above every
	// cursor the original could have handed out (see backup.go).
	last = max(last, tx.seqBase)
	r := tx.raw
	for k := len(transitionInserts) - 1; k >= 0; k-- {
		size := 1 << k
		for len(pending) >= size {
			chunk := pending[:size]
			pending = pending[size:]
			r.reset(size * transitionRowColumns)
			for _, p := range chunk {
				last++
				tr := p.tr
				tr.Seq = last
				r.add(last, p.taskID, nullString(tr.StepID), tr.StepName, string(tr.From), string(tr.To), toNanos(tr.At),
					tr.Reason, int64(tr.Attempt), nullJSON(tr.Metadata), tr.LeaseToken)
			}
			if err := r.run(ctx, transitionInserts[k]); err != nil {
				return fmt.Errorf("insert %d transitions (seq %d to %d): %w", size, last-int64(size)+1, last, err)
			}
		}
	}
	return nil
}
