package coordinator

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

// SubscribeEvents streams the event log: authorized like ListTasks (a
// namespace filter is checked; without one the caller needs every
// namespace, or is limited to its only one), validated, then followed from
// the request's cursor.
func (s *server) SubscribeEvents(req *coordinatorv1.SubscribeEventsRequest, stream coordinatorv1.CoordinatorService_SubscribeEventsServer) error {
	ctx := stream.Context()
	namespace, err := s.tasksNamespace(ctx, req.GetNamespace())
	if err != nil {
		return err
	}
	kind, err := eventKind(req.GetKinds())
	if err != nil {
		return err
	}
	if req.GetFromNow() && req.GetAfter() != "" {
		return status.Error(codes.InvalidArgument, "after and from_now cannot be combined: from_now starts at the next event, after resumes after a cursor")
	}
	params := store.EventListParams{After: req.GetAfter(), Namespace: namespace, Name: req.GetName(), Kind: kind}
	st := s.c.cfg.Store
	if req.GetFromNow() {
		if params.After, err = st.EventTail(ctx); err != nil {
			return toStatus(err)
		}
	}
	// The header tells the caller the starting point is fixed: whatever
	// commits from now on will be sent (with from_now, the wait a client
	// needs before it acts and expects to see the events of its act).
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	gap := eventReadGap
	if m, ok := st.(store.MemoryTail); ok && m.EventTailInMemory() {
		gap = 0
	}
	f := &eventFollower{log: s.c.engine.events, bell: &s.c.engine.hub.commits, stopping: s.c.stopping, poll: eventPollInterval, gap: gap}
	err = f.run(ctx, params, req.GetFollow(), func(ev *store.Event) error {
		return stream.Send(&coordinatorv1.SubscribeEventsResponse{Event: &coordinatorv1.Event{
			Cursor: ev.Cursor, Transition: transitionToProto(ev.Transition, s.meta), Namespace: ev.Namespace, Name: ev.Name,
		}})
	})
	return eventsStatus(err)
}

// eventKind turns the request's kinds into the store's filter: empty, or
// both, is every event.
func eventKind(kinds []coordinatorv1.EventKind) (store.EventKind, error) {
	var task, step bool
	for _, k := range kinds {
		switch k {
		case coordinatorv1.EventKind_EVENT_KIND_UNSPECIFIED:
		case coordinatorv1.EventKind_EVENT_KIND_TASK:
			task = true
		case coordinatorv1.EventKind_EVENT_KIND_STEP:
			step = true
		default:
			return 0, status.Errorf(codes.InvalidArgument, "kinds: unknown value %d (want EVENT_KIND_TASK or EVENT_KIND_STEP)", k)
		}
	}
	switch {
	case task && !step:
		return store.EventKindTask, nil
	case step && !task:
		return store.EventKindStep, nil
	}
	return store.EventKindAny, nil
}

// eventsStatus maps the event log's own errors; the rest as every RPC.
func eventsStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrCursorInvalid):
		return status.Errorf(codes.InvalidArgument, "after: %v: give the cursor of an event this service sent", err)
	case errors.Is(err, store.ErrCursorExpired), errors.Is(err, store.ErrCursorRestored):
		return status.Error(codes.OutOfRange, err.Error())
	}
	return toStatus(err)
}
