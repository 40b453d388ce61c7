package coordinator

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
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
		stored, created, err = s.c.engine.templates.check(ctx, t)
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
	allowed, err := s.listFilter(ctx, "")
	if err != nil {
		return nil, err
	}
	unhosted, err := s.c.engine.unhosted(ctx, allowed)
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.ListExecutorsResponse{Executors: s.c.engine.pool.list(), Unhosted: unhosted}, nil
}

func (s *server) ReportStepResult(ctx context.Context, req *coordinatorv1.ReportStepResultRequest) (*coordinatorv1.ReportStepResultResponse, error) {
	if err := s.authorize(ctx, ""); err != nil {
		return nil, err
	}
	if req.GetResult() == nil {
		return nil, status.Error(codes.InvalidArgument, "result is required")
	}
	applied, err := s.c.engine.applyReported(ctx, req.GetResult())
	var owned *store.OwnedError
	if errors.As(err, &owned) {
		return forward(ctx, s.c.peers, owned, func(ctx context.Context, c coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.ReportStepResultResponse, error) {
			return c.ReportStepResult(ctx, req)
		})
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.ReportStepResultResponse{Applied: applied}, nil
}
