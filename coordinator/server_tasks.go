package coordinator

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// The task RPCs: each authorizes, validates and converts, and leaves the
// work to the engine. Actions on a task another live coordinator owns are
// forwarded to it, so every RPC works on every coordinator.

func (s *server) CreateTask(ctx context.Context, req *coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
	if err := s.authorize(ctx, req.GetNamespace()); err != nil {
		return nil, err
	}
	if view := req.GetView(); coordinatorv1.TaskView_name[int32(view)] == "" {
		return nil, status.Errorf(codes.InvalidArgument, "view: unknown value %d", view)
	}
	raw, err := contextJSON(req.GetContext())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	debounce, err := debounceOf(req)
	if err != nil {
		return nil, err
	}
	runAt, err := startTime(req, s.c.engine.now())
	if err != nil {
		return nil, err
	}
	v, created, err := s.c.engine.createTask(ctx, &createParams{
		namespace: req.GetNamespace(), name: req.GetName(), version: req.GetVersion(), context: raw,
		idempotencyKey: req.GetIdempotencyKey(), bypass: req.GetBypassSteps(), runAt: runAt, priority: int(req.GetPriority()),
		debounce: debounce, basic: req.GetView() == coordinatorv1.TaskView_TASK_VIEW_BASIC,
	})
	var owned *store.OwnedError
	if errors.As(err, &owned) {
		// A debounced create whose open task another coordinator owns:
		// that owner folds it in.
		return forward(ctx, s.c.peers, owned, func(ctx context.Context, c coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.CreateTaskResponse, error) {
			return c.CreateTask(ctx, req)
		})
	}
	if err != nil {
		return nil, toStatus(err)
	}
	// Steps already settled need no executor; the rest may.
	var steps []stepHandler
	for _, st := range v.steps {
		if !st.State.Satisfied() && st.State != state.Cancelled {
			steps = append(steps, stepHandler{step: st.Name, handler: st.Handler})
		}
	}
	warnings := s.handlerWarnings("task "+v.task.ID, steps)
	if req.GetView() == coordinatorv1.TaskView_TASK_VIEW_BASIC {
		task := taskWithContextToProto(v.task, nil, nil, nil, s.meta)
		return &coordinatorv1.CreateTaskResponse{Task: task, Created: created, Warnings: warnings}, nil
	}
	// The stored context is most often the request's own, which then
	// stands for it in the response rather than the stored JSON decoded
	// again.
	taskContext := req.GetContext()
	if taskContext == nil {
		taskContext = &structpb.Struct{}
	}
	if !bytes.Equal(v.task.Context, raw) {
		taskContext = jsonStruct(v.task.Context)
	}
	task := taskWithContextToProto(v.task, taskContext, v.steps, v.transitions, s.meta)
	waitingToProto(task, v.waiting)
	return &coordinatorv1.CreateTaskResponse{Task: task, Created: created, Warnings: warnings}, nil
}

// startTime reads a create's run_at or delay: when the task is to start,
// zero for at once.
func startTime(req *coordinatorv1.CreateTaskRequest, now time.Time) (time.Time, error) {
	switch {
	case req.GetRunAt() != nil && req.GetDelay() != nil:
		return time.Time{}, status.Error(codes.InvalidArgument, "run_at and delay: give one or the other")
	case req.GetRunAt() != nil:
		if err := req.GetRunAt().CheckValid(); err != nil {
			return time.Time{}, status.Errorf(codes.InvalidArgument, "run_at: %v", err)
		}
		return req.GetRunAt().AsTime(), nil
	case req.GetDelay() != nil:
		if err := req.GetDelay().CheckValid(); err != nil {
			return time.Time{}, status.Errorf(codes.InvalidArgument, "delay: %v", err)
		}
		d := req.GetDelay().AsDuration()
		if d < 0 {
			return time.Time{}, status.Errorf(codes.InvalidArgument, "delay: %s is negative", d)
		}
		return now.Add(d), nil
	}
	return time.Time{}, nil
}

func (s *server) toProto(v *taskView) *coordinatorv1.Task {
	p := taskToProto(v.task, v.steps, v.transitions, s.meta)
	waitingToProto(p, v.waiting)
	return p
}

func (s *server) GetTask(ctx context.Context, req *coordinatorv1.GetTaskRequest) (*coordinatorv1.GetTaskResponse, error) {
	// Authenticated first, the namespace once the task is loaded: the read
	// that finds it also says where it lives.
	if err := s.authorize(ctx, ""); err != nil {
		return nil, err
	}
	v, err := s.c.engine.readTask(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.authorize(ctx, v.task.Namespace); err != nil {
		return nil, err
	}
	p := s.toProto(v)
	s.c.engine.addChildLinks(ctx, p, v) // children.go
	return &coordinatorv1.GetTaskResponse{Task: p}, nil
}

// taskStateNames lists the states a task can be in, for an error.
func taskStateNames() string {
	names := make([]string, len(state.TaskStates))
	for i, st := range state.TaskStates {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// Page sizes of ListTasks.
const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

func (s *server) ListTasks(ctx context.Context, req *coordinatorv1.ListTasksRequest) (*coordinatorv1.ListTasksResponse, error) {
	namespace, err := s.tasksNamespace(ctx, req.GetNamespace())
	if err != nil {
		return nil, err
	}
	st, ok := stateFromProto(req.GetState())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "state: unknown value %d", req.GetState())
	}
	if st != "" && !slices.Contains(state.TaskStates[:], st) {
		// A filter no task can match is a mistake, not an empty answer.
		return nil, status.Errorf(codes.InvalidArgument, "state: %s is a step's state; a task is never %s (a task is one of %s)",
			st, st, taskStateNames())
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	before := ""
	if tok := req.GetPageToken(); tok != "" {
		// A token is the last listed task's ID; anything else decoding
		// from base64 would be read as a position among the IDs.
		b, err := base64.RawURLEncoding.DecodeString(tok)
		id, uerr := uuid.ParseBytes(b)
		if err != nil || uerr != nil || id.String() != string(b) {
			return nil, status.Error(codes.InvalidArgument, "page_token is not one this service issued")
		}
		before = string(b)
	}
	f, err := parseTaskFilters(req.GetCreatedAfter(), req.GetCreatedBefore(), req.GetSearch(), req.GetContextEquals())
	if err != nil {
		return nil, err
	}
	params := &store.TaskListParams{
		State: st, Namespace: namespace, Name: req.GetName(), BeforeID: before,
		CreatedAfter: f.createdAfter, CreatedBefore: f.createdBefore, Key: f.key, Context: f.context,
		// One row more than the page shows says whether another page exists.
		Limit: size + 1,
	}
	tasks, err := s.c.engine.listTasks(ctx, params)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &coordinatorv1.ListTasksResponse{}
	if len(tasks) > size {
		tasks = tasks[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(tasks[size-1].ID))
	}
	for _, t := range tasks {
		if !req.GetFull() {
			resp.Tasks = append(resp.Tasks, taskToProto(t, nil, nil, s.meta))
			continue
		}
		v, err := s.c.engine.readTask(ctx, t.ID)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Tasks = append(resp.Tasks, s.toProto(v))
	}
	return resp, nil
}

// taskFilters are the filters ListTasks and CountTasks share, checked.
type taskFilters struct {
	createdAfter, createdBefore time.Time
	key                         string
	context                     []store.ContextMatch
}

// parseTaskFilters checks the shared filters of a request; a bad one is
// InvalidArgument naming its field.
func parseTaskFilters(after, before *timestamppb.Timestamp, search string, contextEquals []string) (taskFilters, error) {
	f := taskFilters{key: search}
	matches, err := parseContextMatches("context_equals", contextEquals)
	if err != nil {
		return f, status.Error(codes.InvalidArgument, err.Error())
	}
	f.context = matches
	for _, b := range []struct {
		name string
		ts   *timestamppb.Timestamp
		dst  *time.Time
	}{{"created_after", after, &f.createdAfter}, {"created_before", before, &f.createdBefore}} {
		if b.ts == nil {
			continue
		}
		if err := b.ts.CheckValid(); err != nil {
			return f, status.Errorf(codes.InvalidArgument, "%s: %v", b.name, err)
		}
		*b.dst = b.ts.AsTime()
	}
	if !f.createdAfter.IsZero() && !f.createdBefore.IsZero() && !f.createdAfter.Before(f.createdBefore) {
		return f, status.Errorf(codes.InvalidArgument, "created_after (%s) must be before created_before (%s)",
			f.createdAfter.Format(time.RFC3339Nano), f.createdBefore.Format(time.RFC3339Nano))
	}
	return f, nil
}

// answer turns an action's outcome into the task it left: the committed
// view, read once. An action refused because another live coordinator owns
// the task is forwarded there.
func answer[R any](ctx context.Context, s *server, snap *snapshot, err error, wrap func(*coordinatorv1.Task) R,
	fwd func(context.Context, coordinatorv1.CoordinatorServiceClient) (R, error)) (R, error) {
	var zero R
	var owned *store.OwnedError
	if errors.As(err, &owned) {
		return forward(ctx, s.c.peers, owned, fwd)
	}
	if err != nil {
		return zero, toStatus(err)
	}
	v, err := s.c.engine.view(ctx, snap)
	if err != nil {
		return zero, toStatus(err)
	}
	return wrap(s.toProto(v)), nil
}

func (s *server) CancelTask(ctx context.Context, req *coordinatorv1.CancelTaskRequest) (*coordinatorv1.CancelTaskResponse, error) {
	if err := s.authorizeTask(ctx, req.GetId()); err != nil {
		return nil, err
	}
	snap, err := s.c.engine.cancelTask(ctx, req.GetId(), req.GetReason())
	return answer(ctx, s, snap, err,
		func(t *coordinatorv1.Task) *coordinatorv1.CancelTaskResponse {
			return &coordinatorv1.CancelTaskResponse{Task: t}
		},
		func(ctx context.Context, c coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.CancelTaskResponse, error) {
			return c.CancelTask(ctx, req)
		})
}

func (s *server) RetryTask(ctx context.Context, req *coordinatorv1.RetryTaskRequest) (*coordinatorv1.RetryTaskResponse, error) {
	if err := s.authorizeTask(ctx, req.GetId()); err != nil {
		return nil, err
	}
	snap, err := s.c.engine.retryTask(ctx, req.GetId(), req.GetReason())
	return answer(ctx, s, snap, err,
		func(t *coordinatorv1.Task) *coordinatorv1.RetryTaskResponse {
			return &coordinatorv1.RetryTaskResponse{Task: t}
		},
		func(ctx context.Context, c coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.RetryTaskResponse, error) {
			return c.RetryTask(ctx, req)
		})
}

func (s *server) ResolveStep(ctx context.Context, req *coordinatorv1.ResolveStepRequest) (*coordinatorv1.ResolveStepResponse, error) {
	if err := s.authorizeTask(ctx, req.GetTaskId()); err != nil {
		return nil, err
	}
	var results json.RawMessage
	if v := req.GetResults(); v != nil {
		raw, err := valueJSON("results", v)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		results = raw
	}
	snap, err := s.c.engine.resolveStep(ctx, req.GetTaskId(), req.GetStepName(), req.GetReason(), results)
	return answer(ctx, s, snap, err,
		func(t *coordinatorv1.Task) *coordinatorv1.ResolveStepResponse {
			return &coordinatorv1.ResolveStepResponse{Task: t}
		},
		func(ctx context.Context, c coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.ResolveStepResponse, error) {
			return c.ResolveStep(ctx, req)
		})
}

func (s *server) RerunStep(ctx context.Context, req *coordinatorv1.RerunStepRequest) (*coordinatorv1.RerunStepResponse, error) {
	if err := s.authorizeTask(ctx, req.GetTaskId()); err != nil {
		return nil, err
	}
	// The caller's token names who asked; forwarded to the task's owner,
	// the request carries the same token and is recorded the same way.
	actor := defaultActor
	if p, err := s.principal(ctx); err != nil {
		return nil, err
	} else if p != nil {
		actor = p.Name
	}
	snap, err := s.c.engine.rerunStep(ctx, req.GetTaskId(), req.GetStepName(), req.GetReason(), actor)
	return answer(ctx, s, snap, err,
		func(t *coordinatorv1.Task) *coordinatorv1.RerunStepResponse {
			return &coordinatorv1.RerunStepResponse{Task: t}
		},
		func(ctx context.Context, c coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.RerunStepResponse, error) {
			return c.RerunStep(ctx, req)
		})
}

func (s *server) SignalTask(ctx context.Context, req *coordinatorv1.SignalTaskRequest) (*coordinatorv1.SignalTaskResponse, error) {
	if err := s.authorizeTask(ctx, req.GetId()); err != nil {
		return nil, err
	}
	snap, consumedBy, err := s.c.engine.signalTask(ctx, req.GetId(), req.GetSignal(), json.RawMessage(req.GetPayload()))
	return answer(ctx, s, snap, err,
		func(t *coordinatorv1.Task) *coordinatorv1.SignalTaskResponse {
			return &coordinatorv1.SignalTaskResponse{Task: t, ConsumedBy: consumedBy}
		},
		func(ctx context.Context, c coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.SignalTaskResponse, error) {
			return c.SignalTask(ctx, req)
		})
}
