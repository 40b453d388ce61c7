package store

import (
	"errors"
	"fmt"
	"time"
)

// The event log is the transitions table read across tasks, in one order
// every reader agrees on, each entry with a cursor. What that order is, and
// why a cursor resumes without missing or repeating anything, is the
// driver's to guarantee (see EventList); cursors are opaque strings, never
// parsed outside the driver that issued them.

// Errors of the event log; test them with errors.Is.
var (
	// ErrCursorInvalid means a cursor was not issued by this store.
	ErrCursorInvalid = errors.New("not a cursor this store issued")
	// ErrCursorExpired means the events after a cursor are no longer all
	// retained (EventPrune deleted some), so resuming there would skip
	// them. The error is a *CursorExpiredError naming the oldest cursor
	// that can still be resumed from.
	ErrCursorExpired = errors.New("cursor older than the events retained")
	// ErrCursorRestored means a cursor was handed out, for events a
	// restore from a backup has since undone, by the store the backup was
	// taken from. The error is a *CursorRestoredError naming the cursor to
	// resume from.
	ErrCursorRestored = errors.New("cursor from before a restore")
)

// MemoryTail is implemented by a store whose EventList answers a cursor
// near the log's head from memory, without reading the database: a
// follower may then read after every commit rather than let commits
// gather between reads.
type MemoryTail interface {
	// EventTailInMemory reports whether EventList reads the head from
	// memory.
	EventTailInMemory() bool
}

// CursorExpiredError refuses a cursor below the log's floor: events up to
// Oldest may have been deleted. errors.Is(err, ErrCursorExpired) holds.
type CursorExpiredError struct {
	Cursor string
	// Oldest is the oldest cursor still accepted: every event after it is
	// retained.
	Oldest string
}

// Error names both cursors.
func (e *CursorExpiredError) Error() string {
	return fmt.Sprintf("cursor %s is older than the events retained: events up to cursor %s have been deleted; "+
		"resume from %s (or subscribe without a cursor, from the oldest event retained)", e.Cursor, e.Oldest, e.Oldest)
}

// Is makes errors.Is(err, ErrCursorExpired) true for a *CursorExpiredError.
func (e *CursorExpiredError) Is(target error) bool { return target == ErrCursorExpired }

// CursorRestoredError refuses a cursor that the store was restored past:
// the backup it was restored from ends at Resume, and the events after
// Resume that the cursor covers were undone by the restore. Resuming from
// Resume reads the restored store's events from there on.
type CursorRestoredError struct {
	Cursor string
	Resume string
}

// Error names both cursors.
func (e *CursorRestoredError) Error() string {
	return fmt.Sprintf("cursor %s was handed out before this store was restored from a backup that ends at cursor %s: "+
		"the events after %s that it covers were undone by the restore; resume from %s (or subscribe without a cursor)",
		e.Cursor, e.Resume, e.Resume, e.Resume)
}

// Is makes errors.Is(err, ErrCursorRestored) true for a
// *CursorRestoredError.
func (e *CursorRestoredError) Is(target error) bool { return target == ErrCursorRestored }

// EventKind selects task or step transitions in EventList.
type EventKind int

// Event kinds; EventKindAny keeps both.
const (
	EventKindAny EventKind = iota
	EventKindTask
	EventKindStep
)

// Event is one entry of the event log: a stored transition with its
// cursor and its task's namespace and template name.
type Event struct {
	// Cursor is the entry's place in the log; EventList after it returns
	// what follows.
	Cursor     string
	Namespace  string
	Name       string
	Transition *Transition
}

// EventListParams select a page of the event log.
type EventListParams struct {
	// After is a cursor (an Event's, an EventPage's Next, or EventTail's);
	// "" starts at the beginning of what is retained.
	After string
	// Namespace and Name, when set, keep the events of tasks of that
	// namespace and template name; Kind keeps task or step transitions.
	Namespace string
	Name      string
	Kind      EventKind
	// Limit is the most log entries the call examines (matching the
	// filters or not), so a call costs in proportion to it; zero (or less)
	// means DefaultEventLimit.
	Limit int
}

// DefaultEventLimit is EventList's page size when the caller gives none.
const DefaultEventLimit = 500

// EventPage is what one EventList call found.
type EventPage struct {
	// Events are the entries examined that match the filters, in log
	// order.
	Events []*Event
	// Next is the cursor to continue from: after the last entry examined,
	// which is past the last event returned when the filters skipped
	// entries. It equals After when nothing new was found.
	Next string
	// More is set when the call stopped at Limit entries: more may follow
	// at once. Unset, the caller has seen everything the log can deliver
	// now.
	More bool
}

// EventPruneParams bound one EventPrune batch.
type EventPruneParams struct {
	// Before is the retention cutoff: entries at or after it, and the
	// entries after them in the log, are kept.
	Before time.Time
	// Limit is the most log entries examined (and so deleted) in one call;
	// zero (or less) means DefaultEventLimit.
	Limit int
}

// TaskPruneParams bound one TaskPrune batch.
type TaskPruneParams struct {
	// Before is the retention cutoff: tasks that finished at or after it
	// are kept.
	Before time.Time
	// BeforeID, when set, limits the look to tasks with a smaller ID. IDs
	// grow with creation time and a task finishes after it is created, so
	// a caller that knows how its IDs encode time bounds the look to the
	// tasks created before the cutoff instead of every finished task.
	BeforeID string
	// Limit is the most tasks deleted in one call; zero (or less) means
	// DefaultTaskPruneLimit.
	Limit int
}

// DefaultTaskPruneLimit is TaskPrune's batch when params.Limit is 0.
const DefaultTaskPruneLimit = 200

// TaskPruneResult says what one TaskPrune batch did.
type TaskPruneResult struct {
	// Deleted counts the tasks deleted.
	Deleted int
	// More is set when the batch stopped at its limit, so another call may
	// delete more at once.
	More bool
}

// EventPruneResult says what one EventPrune batch did.
type EventPruneResult struct {
	// Examined counts the entries the floor moved past; Deleted, those of
	// them deleted.
	Examined, Deleted int
	// Oldest is the log's floor after the call: the oldest cursor
	// EventList accepts ("" if nothing was ever pruned).
	Oldest string
	// More is set when the batch stopped at Limit entries, so another call
	// may prune more at once.
	More bool
}
