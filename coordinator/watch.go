package coordinator

import "sync"

// hub wakes watchers of a task after its transitions are committed. It
// carries no data: a watcher reads what is new from the store, so a slow
// watcher can never miss a transition or hold up the engine.
type hub struct {
	mu   sync.Mutex // protects subs
	subs map[string]map[chan struct{}]struct{}
}

func newHub() *hub { return &hub{subs: map[string]map[chan struct{}]struct{}{}} }

// subscribe returns a channel that receives a signal after each commit for
// taskID, and a function to stop.
func (h *hub) subscribe(taskID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[taskID] == nil {
		h.subs[taskID] = map[chan struct{}]struct{}{}
	}
	h.subs[taskID][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[taskID], ch)
		if len(h.subs[taskID]) == 0 {
			delete(h.subs, taskID)
		}
		h.mu.Unlock()
	}
}

func (h *hub) publish(taskID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[taskID] {
		select {
		case ch <- struct{}{}:
		default: // a signal is already pending
		}
	}
}
