package coordinator

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/auth"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// Security says who may call the coordinator. The zero value lets anyone
// call anything, which is right on loopback and in tests; the CLI refuses to
// serve that way on any other address.
//
// Enforcement happens in two places: the interceptors in
// Coordinator.ServerOptions authenticate every call and check its access
// class (read, write, executor), and each handler checks the namespaces it
// touches. A server built without ServerOptions refuses every call rather
// than serve it unchecked.
//
// Namespace rules: calls naming a namespace (templates, CreateTask,
// ListTasks with a filter) are checked against it; calls naming a task by id
// load the task first and answer NotFound when there is none and
// PermissionDenied when it is in a namespace the caller was not granted.
// ListTemplates without a namespace lists only granted namespaces. ListTasks
// without one needs a token granted "*", or one granted exactly one
// namespace, which is then used as the filter (a paged list cannot be
// filtered after the fact without returning short pages). Executor tokens
// are not limited by namespace, and ListExecutors needs only read access.
type Security struct {
	// Authenticator checks bearer tokens; nil turns tokens off.
	Authenticator auth.Authenticator
	// ExecutorCAs, when set, make RegisterExecutor and ReportStepResult
	// require a TLS client certificate chaining to these roots, so only
	// executors of the mesh can join or report results. The gRPC server
	// must use TLS credentials that request client certificates (verified
	// against a pool including these roots).
	ExecutorCAs *x509.CertPool
}

func (s Security) enabled() bool { return s.Authenticator != nil || s.ExecutorCAs != nil }

// methodAccess maps each CoordinatorService method to the access class it
// needs; it is what the interceptors enforce.
func methodAccess() map[string]auth.Access {
	return map[string]auth.Access{
		coordinatorv1.CoordinatorService_GetTemplate_FullMethodName:      auth.AccessRead,
		coordinatorv1.CoordinatorService_ListTemplates_FullMethodName:    auth.AccessRead,
		coordinatorv1.CoordinatorService_GetTask_FullMethodName:          auth.AccessRead,
		coordinatorv1.CoordinatorService_ListTasks_FullMethodName:        auth.AccessRead,
		coordinatorv1.CoordinatorService_WatchTask_FullMethodName:        auth.AccessRead,
		coordinatorv1.CoordinatorService_SubscribeEvents_FullMethodName:  auth.AccessRead,
		coordinatorv1.CoordinatorService_ListExecutors_FullMethodName:    auth.AccessRead,
		coordinatorv1.CoordinatorService_GetAnalytics_FullMethodName:     auth.AccessRead,
		coordinatorv1.CoordinatorService_CountTasks_FullMethodName:       auth.AccessRead,
		coordinatorv1.CoordinatorService_GetRateLimit_FullMethodName:     auth.AccessRead,
		coordinatorv1.CoordinatorService_ListRateLimits_FullMethodName:   auth.AccessRead,
		coordinatorv1.CoordinatorService_SetRateLimit_FullMethodName:     auth.AccessWrite,
		coordinatorv1.CoordinatorService_DeleteRateLimit_FullMethodName:  auth.AccessWrite,
		coordinatorv1.CoordinatorService_RegisterTemplate_FullMethodName: auth.AccessWrite,
		coordinatorv1.CoordinatorService_CreateTask_FullMethodName:       auth.AccessWrite,
		coordinatorv1.CoordinatorService_CancelTask_FullMethodName:       auth.AccessWrite,
		coordinatorv1.CoordinatorService_RetryTask_FullMethodName:        auth.AccessWrite,
		coordinatorv1.CoordinatorService_CancelTasks_FullMethodName:      auth.AccessWrite,
		coordinatorv1.CoordinatorService_RetryTasks_FullMethodName:       auth.AccessWrite,
		coordinatorv1.CoordinatorService_ResolveStep_FullMethodName:      auth.AccessWrite,
		coordinatorv1.CoordinatorService_RerunStep_FullMethodName:        auth.AccessWrite,
		coordinatorv1.CoordinatorService_SignalTask_FullMethodName:       auth.AccessWrite,
		coordinatorv1.CoordinatorService_GetSchedule_FullMethodName:      auth.AccessRead,
		coordinatorv1.CoordinatorService_ListSchedules_FullMethodName:    auth.AccessRead,
		coordinatorv1.CoordinatorService_CreateSchedule_FullMethodName:   auth.AccessWrite,
		coordinatorv1.CoordinatorService_PauseSchedule_FullMethodName:    auth.AccessWrite,
		coordinatorv1.CoordinatorService_ResumeSchedule_FullMethodName:   auth.AccessWrite,
		coordinatorv1.CoordinatorService_DeleteSchedule_FullMethodName:   auth.AccessWrite,
		coordinatorv1.CoordinatorService_BackfillSchedule_FullMethodName: auth.AccessWrite,
		coordinatorv1.CoordinatorService_RegisterExecutor_FullMethodName: auth.AccessExecutor,
		coordinatorv1.CoordinatorService_ReportStepResult_FullMethodName: auth.AccessExecutor,
	}
}

// newGuard builds the interceptors' guard, or nil when sec is off.
func newGuard(sec Security, log *slog.Logger) (*auth.Guard, error) {
	if !sec.enabled() {
		return nil, nil
	}
	g, err := auth.NewGuard(auth.GuardConfig{
		Authenticator: sec.Authenticator,
		Methods:       methodAccess(),
		Public:        []string{auth.HealthService, auth.ReflectionService, auth.ReflectionAlphaService},
		CertRoots:     sec.ExecutorCAs,
		CertAccess:    auth.AccessExecutor,
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("coordinator: security: %w", err)
	}
	return g, nil
}

// principal is the caller the guard let through, or nil when security is
// off. A secured coordinator served without its interceptors has no
// principal on any call, and refuses them all.
func (s *server) principal(ctx context.Context) (*auth.Principal, error) {
	if s.c.guard == nil {
		return nil, nil
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "caller not checked: serve the coordinator with Coordinator.ServerOptions(), which carry its auth interceptors")
	}
	return p, nil
}

// authorize lets the call through when its caller may act in namespace ns;
// ns "" checks only that the caller was authenticated.
func (s *server) authorize(ctx context.Context, ns string) error {
	p, err := s.principal(ctx)
	if err != nil || p == nil || ns == "" {
		return err
	}
	return auth.Status(p.CheckNamespace(ns))
}

// authorizeTask is authorize for calls naming a task by id: it loads the
// task to learn its namespace. A caller granted every namespace costs no
// read. An unknown id is NotFound, so the error says what is wrong; the
// caller holds a valid token by then, and ids are random.
func (s *server) authorizeTask(ctx context.Context, id string) error {
	p, err := s.principal(ctx)
	if err != nil || p == nil || p.AllowsAllNamespaces() || id == "" {
		return err
	}
	ns, err := s.c.engine.taskNamespace(ctx, id)
	if err != nil {
		return toStatus(err)
	}
	return auth.Status(p.CheckNamespace(ns))
}

// listFilter returns which namespaces a list without its own filter may
// show: every namespace when security is off or the caller holds "*".
func (s *server) listFilter(ctx context.Context, ns string) (func(string) bool, error) {
	if err := s.authorize(ctx, ns); err != nil {
		return nil, err
	}
	p, err := s.principal(ctx)
	if err != nil || p == nil || ns != "" || p.AllowsAllNamespaces() {
		return func(string) bool { return true }, err
	}
	return p.AllowsNamespace, nil
}

// tasksNamespace is the namespace filter ListTasks runs with: the request's
// (checked), or for a caller limited to one namespace that namespace.
func (s *server) tasksNamespace(ctx context.Context, ns string) (string, error) {
	if err := s.authorize(ctx, ns); err != nil {
		return "", err
	}
	p, err := s.principal(ctx)
	if err != nil || p == nil || ns != "" || p.AllowsAllNamespaces() {
		return ns, err
	}
	if len(p.Namespaces) == 1 {
		return p.Namespaces[0], nil
	}
	return "", status.Errorf(codes.PermissionDenied,
		"%s may list tasks only in its namespaces (%v): give a namespace filter; listing all namespaces needs a token granted \"*\"", p, p.Namespaces)
}
