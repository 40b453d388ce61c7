package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-go/tasker/store"
)

// The head of the event log in memory. Followers of the event stream read
// the newest entries again and again, one commit after another; reading
// them back from the file cost the coordinator about a tenth of its CPU
// under load (EventList's join of transitions with tasks, for every burst
// of commits). The committer knows every entry it commits, in seq order,
// so it keeps the newest ones here and EventList serves a cursor inside
// them without touching the file.
//
// Only what this Store committed is in the tail, so it is trusted only for
// the range it holds, and only while that range is contiguous: a batch
// whose first seq does not follow the tail's last (another connection
// wrote to the file, or a commit reported as failed went through after
// all) starts the tail over. At the tail's end, whether anything follows
// is asked of the file, where another writer's entries would be found, but
// at most once per tailFileEvery: followers wake several times per commit
// (once per task it advanced) and would otherwise read the file, to find
// nothing, every time. So another writer's entries reach a follower at
// most tailFileEvery later than they would without the tail.

// EventTailInMemory implements store.MemoryTail.
func (s *Store) EventTailInMemory() bool { return true }

// tailCapacity is how many of the newest entries the tail keeps: enough for
// the followers of a busy coordinator to stay inside it between two reads.
const tailCapacity = 8192

// tailFileEvery is the least time between two reads of the file at the
// tail's end.
const tailFileEvery = 50 * time.Millisecond

// eventTail is the ring of the newest committed entries. Nothing changes an
// entry once it is in the tail, so pages share them with their readers, and
// an entry's transition is the one the write returned to its caller: a
// committed transition is a record, which no caller edits.
type eventTail struct {
	mu sync.RWMutex
	// ring holds the entries with seq first..first+n-1; entry seq s is at
	// ring[(s-first+start) % len(ring)].
	ring  []*store.Event
	start int
	n     int
	first int64
	// fileEvery is tailFileEvery (tests change it); checked is when the
	// file was last asked what follows the tail, in Unix nanoseconds.
	fileEvery time.Duration
	checked   atomic.Int64
}

func newEventTail(capacity int) *eventTail {
	return &eventTail{ring: make([]*store.Event, capacity), fileEvery: tailFileEvery}
}

// last returns the seq of the newest entry held, or first-1 when empty.
func (t *eventTail) lastLocked() int64 { return t.first + int64(t.n) - 1 }

// append adds a committed batch's entries, in seq order. A batch that does
// not follow on from the tail starts it over.
func (t *eventTail) append(entries []*store.Event) {
	if len(entries) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 || entries[0].Transition.Seq != t.lastLocked()+1 {
		t.start, t.n, t.first = 0, 0, entries[0].Transition.Seq
		clear(t.ring)
	}
	for _, e := range entries {
		if e.Transition.Seq != t.lastLocked()+1 {
			// Within a batch seqs are consecutive; anything else means the
			// batch is not what it claims, and the tail trusts nothing.
			t.start, t.n, t.first = 0, 0, 0
			clear(t.ring)
			return
		}
		if t.n == len(t.ring) {
			t.ring[t.start] = nil
			t.start = (t.start + 1) % len(t.ring)
			t.first++
			t.n--
		}
		t.ring[(t.start+t.n)%len(t.ring)] = e
		t.n++
	}
}

// trim drops the entries at or below floor: EventPrune moved the log's
// floor there, and cursors below it must be refused by the file's read.
func (t *eventTail) trim(floor int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.n > 0 && t.first <= floor {
		t.ring[t.start] = nil
		t.start = (t.start + 1) % len(t.ring)
		t.first++
		t.n--
	}
}

// list answers EventList for a cursor inside the tail, examining up to
// limit entries, or at its end when the file was read there less than
// fileEvery before now; ok is false when the file must answer.
func (t *eventTail) list(after int64, p *store.EventListParams, limit int, now time.Time) (page *store.EventPage, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.n == 0 || after < t.first-1 || after > t.lastLocked() {
		return nil, false
	}
	if after == t.lastLocked() {
		checked := t.checked.Load()
		if now.UnixNano()-checked < int64(t.fileEvery) || !t.checked.CompareAndSwap(checked, now.UnixNano()) {
			return &store.EventPage{Next: p.After}, true
		}
		return nil, false
	}
	page = &store.EventPage{}
	from := int(after - t.first + 1)
	examined := min(limit, t.n-from)
	for i := from; i < from+examined; i++ {
		e := t.ring[(t.start+i)%len(t.ring)]
		if eventMatches(p, e.Namespace, e.Name, e.Transition) {
			page.Events = append(page.Events, e)
		}
		page.Next = e.Cursor
	}
	page.More = examined == limit
	return page, true
}

// taskKey is what an event says of its task besides the id.
type taskKey struct{ namespace, name string }

// taskKeys remembers the namespace and template name of the tasks the
// committer writes transitions for, so the tail's entries need no read of
// the tasks table. Only the committer's goroutine uses it. A task is
// forgotten when it finishes; a later transition (a late result, a rerun)
// reads its key from the file once.
type taskKeys map[string]taskKey

// entries makes the tail's entries for a batch's transitions, whose seqs
// flushTransitions has just set, reading the keys of tasks it does not
// know within the batch's transaction.
func (k taskKeys) entries(ctx context.Context, tx *wtx, pending []pendingTransition) ([]*store.Event, error) {
	// One allocation for the batch's events; the tail keeps pointers into
	// it, and the array lives until the last of them leaves the tail.
	events := make([]store.Event, len(pending))
	out := make([]*store.Event, len(pending))
	for i, p := range pending {
		key, ok := k[p.taskID]
		switch {
		case ok:
		case p.key != (taskKey{}):
			key = p.key
		default:
			err := tx.QueryRowContext(ctx, `SELECT namespace, name FROM tasks WHERE id = ?`, p.taskID).Scan(&key.namespace, &key.name)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("read the namespace and name of task %s: %w", p.taskID, err)
			}
		}
		if p.tr.StepID == "" && p.tr.To.Terminal() {
			delete(k, p.taskID)
		} else if !ok {
			k[p.taskID] = key
		}
		events[i] = store.Event{Cursor: formatCursor(p.tr.Seq), Namespace: key.namespace, Name: key.name, Transition: p.tr}
		out[i] = &events[i]
	}
	return out, nil
}
