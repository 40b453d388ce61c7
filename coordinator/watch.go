package coordinator

import (
	"sync"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// watchEvent carries what one commit changed for a task. Transitions is nil
// when the committer did not have them at hand (a task's creation); the
// watcher then reads what is new from the store.
type watchEvent struct {
	transitions []*store.Transition
	taskState   state.State
}

// watcher is one WatchTask stream's subscription.
type watcher struct {
	ch chan watchEvent
	// lagged is set when an event was dropped because the watcher fell
	// behind; it then catches up from the store, so nothing is missed.
	lagged bool // guarded by hub.mu
}

// hub fans committed transitions out to the watchers of a task, from
// memory, so watching costs the store nothing on the hot path.
type hub struct {
	mu   sync.Mutex // protects subs and every watcher's lagged
	subs map[string]map[*watcher]struct{}
}

func newHub() *hub { return &hub{subs: map[string]map[*watcher]struct{}{}} }

// watcherBuffer is how many commits a watcher may fall behind before it
// switches to reading the store.
const watcherBuffer = 64

// subscribe registers a watcher of taskID and returns it with a function
// to stop.
func (h *hub) subscribe(taskID string) (*watcher, func()) {
	w := &watcher{ch: make(chan watchEvent, watcherBuffer)}
	h.mu.Lock()
	if h.subs[taskID] == nil {
		h.subs[taskID] = map[*watcher]struct{}{}
	}
	h.subs[taskID][w] = struct{}{}
	h.mu.Unlock()
	return w, func() {
		h.mu.Lock()
		delete(h.subs[taskID], w)
		if len(h.subs[taskID]) == 0 {
			delete(h.subs, taskID)
		}
		h.mu.Unlock()
	}
}

// takeLag reports and clears whether w dropped events.
func (h *hub) takeLag(w *watcher) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	lagged := w.lagged
	w.lagged = false
	return lagged
}

func (h *hub) publish(taskID string, ev watchEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs[taskID] {
		select {
		case w.ch <- ev:
		default:
			w.lagged = true
		}
	}
}
