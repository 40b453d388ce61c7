package coordinator

import (
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// watchEvent carries what one commit changed for a task: its transitions in
// order and the task's state before the first of them. Transitions is nil
// when the watcher must read what is new from the store instead (the task
// was reloaded after a failed write).
type watchEvent struct {
	transitions []*store.Transition
	before      state.State
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
	// commits rings on every commit of any task, for event followers.
	commits bell
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
	h.commits.ring()
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

// watchPollInterval is how often a watch of a task owned by another
// coordinator reads the store for news.
const watchPollInterval = 250 * time.Millisecond

// taskWatch is the state of one WatchTask stream: the last transition sent
// and the task's state as of it.
type taskWatch struct {
	s      *server
	stream coordinatorv1.CoordinatorService_WatchTaskServer
	id     string
	after  int64
	state  state.State
	// replayed is set once the history up to after has been read, so the
	// task's state as of after is known.
	replayed bool
}

// send sends the transitions of trs newer than the last one sent. Each
// message's task_state is the task's state right after its transition,
// stepped from before (the state before trs[0]) through the task's own
// transitions, whether the transitions come live or from the store.
func (w *taskWatch) send(trs []*store.Transition, before state.State) error {
	st := before
	for _, tr := range trs {
		if tr.StepID == "" {
			st = tr.To
		}
		if tr.Seq <= w.after {
			continue
		}
		resp := &coordinatorv1.WatchTaskResponse{Transition: transitionToProto(tr, w.s.meta), TaskState: protoState(st)}
		if err := w.stream.Send(resp); err != nil {
			return err
		}
		w.after, w.state = tr.Seq, st
	}
	return nil
}

// catchUp sends what is stored after the last transition sent. The first
// call reads the whole history, to learn the task's state as of the
// caller's after_seq; later ones read only what is newer.
func (w *taskWatch) catchUp() error {
	ctx := w.stream.Context()
	st := w.s.c.cfg.Store
	if !w.replayed {
		trs, err := st.TransitionList(ctx, &store.TransitionListParams{TaskID: w.id})
		if err != nil {
			return toStatus(err)
		}
		if len(trs) == 0 {
			// Every task has at least its creation's transitions unless
			// it does not exist.
			if _, err := st.TaskGet(ctx, w.id); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return status.Errorf(codes.NotFound, "task %s not found", w.id)
				}
				return toStatus(err)
			}
		}
		w.replayed = true
		// The state before the first transition of a task is pending;
		// transitions up to after_seq are stepped through but not sent.
		return w.send(trs, state.Pending)
	}
	trs, err := st.TransitionList(ctx, &store.TransitionListParams{TaskID: w.id, AfterSeq: w.after})
	if err != nil {
		return toStatus(err)
	}
	return w.send(trs, w.state)
}

func (s *server) WatchTask(req *coordinatorv1.WatchTaskRequest, stream coordinatorv1.CoordinatorService_WatchTaskServer) error {
	ctx := stream.Context()
	if req.GetId() == "" {
		return status.Error(codes.InvalidArgument, "id is required")
	}
	if err := s.authorizeTask(ctx, req.GetId()); err != nil {
		return err
	}
	// Subscribe before reading what is stored, so nothing committed in
	// between is missed; what arrives twice is skipped by sequence number.
	hub := s.c.engine.hub
	sub, stop := hub.subscribe(req.GetId())
	defer stop()
	w := &taskWatch{s: s, stream: stream, id: req.GetId(), after: req.GetAfterSeq()}
	var err error
	if live, ok := s.c.engine.current(req.GetId(), w.after); ok {
		// The task is running here and the caller has seen everything
		// committed so far: the live events are all it needs.
		w.state, w.replayed = live, true
	} else {
		err = w.catchUp()
	}
	// A task run by another coordinator (several share one database)
	// commits nothing here: poll the store for what is new instead.
	poll := time.NewTicker(watchPollInterval)
	defer poll.Stop()
	for err == nil && !w.state.Terminal() {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.c.stopping:
			return status.Error(codes.Unavailable, "coordinator is shutting down")
		case <-poll.C:
			if s.c.engine.lookup(req.GetId()) == nil {
				err = w.catchUp()
			}
		case ev := <-sub.ch:
			if ev.transitions == nil || hub.takeLag(sub) || !w.replayed {
				err = w.catchUp()
				continue
			}
			err = w.send(ev.transitions, ev.before)
		}
	}
	return err
}
