package coordinator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// server adapts the engine to the CoordinatorService API: it validates
// requests, converts messages and maps errors onto gRPC statuses.
type server struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	c    *Coordinator
	meta *metadataCache
	// unhosted limits the log of handlers no executor hosts to once each.
	unhosted unhostedHandlers
}

func (s *server) RegisterTemplate(ctx context.Context, req *coordinatorv1.RegisterTemplateRequest) (*coordinatorv1.RegisterTemplateResponse, error) {
	if req.GetTemplate() == nil {
		return nil, status.Error(codes.InvalidArgument, "template is required")
	}
	if err := s.authorize(ctx, req.GetTemplate().GetNamespace()); err != nil {
		return nil, err
	}
	t, err := templatepb.FromProto(req.GetTemplate())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var (
		stored  *template.Template
		created bool
	)
	if req.GetValidateOnly() {
		stored, created, err = s.checkTemplate(ctx, t)
	} else {
		stored, created, err = s.c.engine.templates.register(ctx, t, s.c.engine.now())
	}
	if err != nil {
		return nil, toStatus(err)
	}
	p, err := templatepb.ToProto(stored)
	if err != nil {
		return nil, toStatus(err)
	}
	steps := make([]stepHandler, len(stored.Steps))
	for i, st := range stored.Steps {
		steps[i] = stepHandler{step: st.Name, handler: st.Handler}
	}
	return &coordinatorv1.RegisterTemplateResponse{
		Template: p, Created: created,
		Warnings: s.handlerWarnings("template "+templateKey(stored.Namespace, stored.Name, stored.Version), steps),
	}, nil
}

// checkTemplate runs every check registering t would (the template's own
// validity, the limits, and different content already stored under its
// namespace, name and version) and stores nothing. It returns t normalized,
// and whether registering it would store a new version.
func (s *server) checkTemplate(ctx context.Context, t *template.Template) (*template.Template, bool, error) {
	t.Normalize()
	if err := template.Validate(t, s.c.engine.templates.limits); err != nil {
		return nil, false, err
	}
	key := templateKey(t.Namespace, t.Name, t.Version)
	existing, err := s.c.cfg.Store.TemplateGet(ctx, &store.TemplateGetParams{Namespace: t.Namespace, Name: t.Name, Version: t.Version})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return t, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("load template %s: %w", key, err)
	case existing.Digest != template.Digest(t):
		// The words registering says on the same conflict (the stores'
		// and templateBook.register's), so a check and a registration
		// read alike.
		return nil, false, fmt.Errorf("%s: template %s has digest %s, not %s: %w; register it under a new version",
			key, key, existing.Digest, template.Digest(t), store.ErrTemplateExists)
	}
	return t, false, nil
}

func (s *server) GetTemplate(ctx context.Context, req *coordinatorv1.GetTemplateRequest) (*coordinatorv1.GetTemplateResponse, error) {
	if req.GetNamespace() == "" || req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "namespace and name are required")
	}
	if err := s.authorize(ctx, req.GetNamespace()); err != nil {
		return nil, err
	}
	ct, err := s.c.engine.templates.get(ctx, req.GetNamespace(), req.GetName(), req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	p, err := templatepb.ToProto(ct.tmpl)
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.GetTemplateResponse{Template: p}, nil
}

func (s *server) ListTemplates(ctx context.Context, req *coordinatorv1.ListTemplatesRequest) (*coordinatorv1.ListTemplatesResponse, error) {
	allowed, err := s.listFilter(ctx, req.GetNamespace())
	if err != nil {
		return nil, err
	}
	all, err := s.c.engine.templates.list(ctx, req.GetNamespace())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &coordinatorv1.ListTemplatesResponse{}
	for _, t := range all {
		if !allowed(t.Namespace) {
			continue
		}
		p, err := templatepb.ToProto(t)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Templates = append(resp.Templates, p)
	}
	return resp, nil
}

func (s *server) CreateTask(ctx context.Context, req *coordinatorv1.CreateTaskRequest) (*coordinatorv1.CreateTaskResponse, error) {
	if err := s.authorize(ctx, req.GetNamespace()); err != nil {
		return nil, err
	}
	raw, err := contextJSON(req.GetContext())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	stored, created, err := s.c.engine.createTask(ctx, &createParams{
		namespace: req.GetNamespace(), name: req.GetName(), version: req.GetVersion(), context: raw,
		idempotencyKey: req.GetIdempotencyKey(), bypass: req.GetBypassSteps(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	task := taskToProto(stored.Task, stored.Steps, stored.Transitions, s.meta)
	if !created {
		if task, err = s.fullTask(ctx, stored.Task.ID); err != nil {
			return nil, toStatus(err)
		}
	}
	// Steps already settled need no executor; the rest may.
	var steps []stepHandler
	for _, st := range task.GetSteps() {
		if !statepb.Satisfied(st.GetState()) && st.GetState() != coordinatorv1.State_STATE_CANCELLED {
			steps = append(steps, stepHandler{step: st.GetName(), handler: st.GetHandler()})
		}
	}
	warnings := s.handlerWarnings("task "+task.GetId(), steps)
	return &coordinatorv1.CreateTaskResponse{Task: task, Created: created, Warnings: warnings}, nil
}

// fullTask reads a task with its steps and transitions from the store.
func (s *server) fullTask(ctx context.Context, id string) (*coordinatorv1.Task, error) {
	if id == "" {
		return nil, invalidf("id is required")
	}
	t, err := s.c.cfg.Store.TaskGet(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFoundf("task %s not found", id)
		}
		return nil, err
	}
	steps, err := s.c.cfg.Store.StepList(ctx, id)
	if err != nil {
		return nil, err
	}
	trs, err := s.c.cfg.Store.TransitionList(ctx, &store.TransitionListParams{TaskID: id})
	if err != nil {
		return nil, err
	}
	return taskToProto(t, steps, trs, s.meta), nil
}

func (s *server) GetTask(ctx context.Context, req *coordinatorv1.GetTaskRequest) (*coordinatorv1.GetTaskResponse, error) {
	// Authenticated first, the namespace once the task is loaded: the read
	// that finds it also says where it lives.
	if err := s.authorize(ctx, ""); err != nil {
		return nil, err
	}
	t, err := s.fullTask(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.authorize(ctx, t.GetNamespace()); err != nil {
		return nil, err
	}
	return &coordinatorv1.GetTaskResponse{Task: t}, nil
}

func (s *server) ListTasks(ctx context.Context, req *coordinatorv1.ListTasksRequest) (*coordinatorv1.ListTasksResponse, error) {
	namespace, err := s.tasksNamespace(ctx, req.GetNamespace())
	if err != nil {
		return nil, err
	}
	st, ok := stateFromProto(req.GetState())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "state: unknown value %d", req.GetState())
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		size = 50
	case size > 1000:
		size = 1000
	}
	before := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token is not one this service issued")
		}
		before = string(b)
	}
	tasks, err := s.c.cfg.Store.TaskList(ctx, &store.TaskListParams{
		State: st, Namespace: namespace, Name: req.GetName(), BeforeID: before, Limit: size + 1,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &coordinatorv1.ListTasksResponse{}
	if len(tasks) > size {
		tasks = tasks[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(tasks[size-1].ID))
	}
	for _, t := range tasks {
		if req.GetFull() {
			full, err := s.fullTask(ctx, t.ID)
			if err != nil {
				return nil, toStatus(err)
			}
			resp.Tasks = append(resp.Tasks, full)
			continue
		}
		resp.Tasks = append(resp.Tasks, taskToProto(t, nil, nil, s.meta))
	}
	return resp, nil
}

func (s *server) CancelTask(ctx context.Context, req *coordinatorv1.CancelTaskRequest) (*coordinatorv1.CancelTaskResponse, error) {
	if err := s.authorizeTask(ctx, req.GetId()); err != nil {
		return nil, err
	}
	if err := s.c.engine.cancelTask(ctx, req.GetId(), req.GetReason()); err != nil {
		return nil, toStatus(err)
	}
	t, err := s.fullTask(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.CancelTaskResponse{Task: t}, nil
}

func (s *server) RetryTask(ctx context.Context, req *coordinatorv1.RetryTaskRequest) (*coordinatorv1.RetryTaskResponse, error) {
	if err := s.authorizeTask(ctx, req.GetId()); err != nil {
		return nil, err
	}
	if err := s.c.engine.retryTask(ctx, req.GetId(), req.GetReason()); err != nil {
		return nil, toStatus(err)
	}
	t, err := s.fullTask(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.RetryTaskResponse{Task: t}, nil
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
	if err := s.c.engine.resolveStep(ctx, req.GetTaskId(), req.GetStepName(), req.GetReason(), results); err != nil {
		return nil, toStatus(err)
	}
	t, err := s.fullTask(ctx, req.GetTaskId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.ResolveStepResponse{Task: t}, nil
}

func (s *server) RegisterExecutor(ctx context.Context, req *coordinatorv1.RegisterExecutorRequest) (*coordinatorv1.RegisterExecutorResponse, error) {
	if err := s.authorize(ctx, ""); err != nil {
		return nil, err
	}
	if req.GetAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "address is required")
	}
	info, err := s.c.engine.pool.register(ctx, req.GetAddress())
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.RegisterExecutorResponse{Executor: info, CoordinatorId: s.c.cfg.ID}, nil
}

func (s *server) ListExecutors(ctx context.Context, _ *coordinatorv1.ListExecutorsRequest) (*coordinatorv1.ListExecutorsResponse, error) {
	if err := s.authorize(ctx, ""); err != nil {
		return nil, err
	}
	return &coordinatorv1.ListExecutorsResponse{Executors: s.c.engine.pool.list()}, nil
}

func (s *server) ReportStepResult(ctx context.Context, req *coordinatorv1.ReportStepResultRequest) (*coordinatorv1.ReportStepResultResponse, error) {
	if err := s.authorize(ctx, ""); err != nil {
		return nil, err
	}
	if req.GetResult() == nil {
		return nil, status.Error(codes.InvalidArgument, "result is required")
	}
	applied, err := s.c.engine.applyReported(req.GetResult())
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.ReportStepResultResponse{Applied: applied}, nil
}
