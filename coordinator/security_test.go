package coordinator_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/auth/authtest"
	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	"github.com/tasker-go/tasker/executor/builtin"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store/sqlite"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// Tokens every secured test coordinator accepts.
const securityTokens = `
- {name: all, token: all-token-0123456789, namespaces: ["*"], access: write}
- {name: writer-a, token: writer-a-token-0123456789, namespaces: [a], access: write}
- {name: reader-a, token: reader-a-token-0123456789, namespaces: [a], access: read}
- {name: writer-b, token: writer-b-token-0123456789, namespaces: [b], access: write}
- {name: reader-ab, token: reader-ab-token-0123456789, namespaces: [a, b], access: read}
- {name: exec, token: exec-token-0123456789, access: executor}
`

// secured is a coordinator serving TLS with tokens on a loopback port: the
// mesh CA signs the coordinator's and executors' certificates, the api CA
// signs API callers' certificates.
type secured struct {
	t        *testing.T
	ctx      context.Context
	addr     string
	mesh     *authtest.CA
	api      *authtest.CA
	coordTLS tls.Certificate
}

type securedConfig struct {
	// tokensOff leaves tokens out: only executor certificates are checked.
	tokensOff bool
	// requireClientCerts asks every caller for a certificate from the mesh
	// or api CA (the CLI's --tls-client-ca).
	requireClientCerts bool
}

func newSecured(t *testing.T, cfg securedConfig) *secured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	s := &secured{t: t, ctx: ctx, mesh: authtest.NewCA(t, "mesh"), api: authtest.NewCA(t, "api")}
	s.coordTLS = s.mesh.Issue(t, "coordinator").TLS
	sec := coordinator.Security{ExecutorCAs: s.mesh.Pool()}
	if !cfg.tokensOff {
		toks, err := auth.ParseTokens([]byte(securityTokens))
		require.NoError(t, err)
		sec.Authenticator = toks
	}
	log := testLogger(t)
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "tasker.db"), Logger: log})
	require.NoError(t, err)
	coord, err := coordinator.New(coordinator.Config{
		Store: st, Logger: log, Security: sec,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(auth.ClientTLS(s.mesh.Pool(), &s.coordTLS)))},
	})
	require.NoError(t, err)
	require.NoError(t, coord.Start(ctx))
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(s.mesh.Cert)
	clientCAs.AddCert(s.api.Cert)
	mode := tls.VerifyClientCertIfGiven
	if cfg.requireClientCerts {
		mode = tls.RequireAndVerifyClientCert
	}
	srv := grpc.NewServer(append(coord.ServerOptions(), grpc.Creds(credentials.NewTLS(auth.ServerTLS(s.coordTLS, clientCAs, mode))))...)
	coord.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		_ = coord.Stop(context.Background())
		_ = st.Close()
	})
	s.addr = lis.Addr().String()
	return s
}

// conn dials the coordinator over TLS with an optional token and client
// certificate.
func (s *secured) conn(token string, cert *tls.Certificate) *grpc.ClientConn {
	s.t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(auth.ClientTLS(s.mesh.Pool(), cert)))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.BearerToken(token, true)))
	}
	cc, err := grpc.NewClient(s.addr, opts...)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func (s *secured) client(token string) coordinatorv1.CoordinatorServiceClient {
	return coordinatorv1.NewCoordinatorServiceClient(s.conn(token, nil))
}

// register registers a two-step template in namespace ns.
func (s *secured) register(c coordinatorv1.CoordinatorServiceClient, ns string) error {
	tmpl, err := template.Parse([]byte(`
namespace: ` + ns + `
name: flow
version: 1.0.0
steps:
  - name: first
    handler: noop
  - name: second
    handler: echo
    depends_on: [first]
`))
	require.NoError(s.t, err)
	p, err := templatepb.ToProto(tmpl)
	require.NoError(s.t, err)
	_, err = c.RegisterTemplate(s.ctx, &coordinatorv1.RegisterTemplateRequest{Template: p})
	return err
}

func (s *secured) create(c coordinatorv1.CoordinatorServiceClient, ns string) (*coordinatorv1.Task, error) {
	ctx, err := structpb.NewStruct(map[string]any{"n": time.Now().UnixNano()})
	require.NoError(s.t, err)
	resp, err := c.CreateTask(s.ctx, &coordinatorv1.CreateTaskRequest{Namespace: ns, Name: "flow", Context: ctx})
	return resp.GetTask(), err
}

// startExecutor serves an executor with cert, trusting the mesh CA for the
// coordinator and requiring the coordinator's client certificate, and
// registering with the exec token. It returns the executor's address.
func (s *secured) startExecutor(cert *authtest.Leaf) (string, string) {
	s.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(s.t, err)
	ex, err := executor.New(executor.Config{
		Capacity: 4, Coordinator: s.addr, Logger: testLogger(s.t),
		RegisterInterval: 50 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		ServerOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(auth.ServerTLS(cert.TLS, s.mesh.Pool(), tls.RequireAndVerifyClientCert)))},
		DialOptions: []grpc.DialOption{
			grpc.WithTransportCredentials(credentials.NewTLS(auth.ClientTLS(s.mesh.Pool(), &cert.TLS))),
			grpc.WithPerRPCCredentials(auth.BearerToken("exec-token-0123456789", true)),
		},
	})
	require.NoError(s.t, err)
	require.NoError(s.t, builtin.Register(ex))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ex.Serve(ctx, lis)
	}()
	s.t.Cleanup(func() {
		cancel()
		<-done
	})
	return ex.ID(), lis.Addr().String()
}

func (s *secured) connected(c coordinatorv1.CoordinatorServiceClient) []string {
	resp, err := c.ListExecutors(s.ctx, &coordinatorv1.ListExecutorsRequest{})
	require.NoError(s.t, err)
	var ids []string
	for _, e := range resp.GetExecutors() {
		if e.GetConnected() {
			ids = append(ids, e.GetId())
		}
	}
	return ids
}

// requireCode asserts err's gRPC code and that its message names want.
func requireCode(t *testing.T, err error, code codes.Code, want string) {
	t.Helper()
	require.Equal(t, code, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), want)
}

func TestSecurityTokensAndNamespaces(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	all, writerA, readerA, writerB, readerAB, execTok :=
		s.client("all-token-0123456789"), s.client("writer-a-token-0123456789"), s.client("reader-a-token-0123456789"),
		s.client("writer-b-token-0123456789"), s.client("reader-ab-token-0123456789"), s.client("exec-token-0123456789")
	require.NoError(t, s.register(all, "a"))
	require.NoError(t, s.register(writerB, "b"))
	requireCode(t, s.register(writerA, "b"), codes.PermissionDenied, `token "writer-a" is not granted namespace "b" (granted: a)`)

	_, err := s.create(s.client(""), "a")
	requireCode(t, err, codes.Unauthenticated, "no bearer token")
	_, err = s.create(s.client("wrong-token-0123456789"), "a")
	requireCode(t, err, codes.Unauthenticated, "token not recognised")
	_, err = s.create(readerA, "a")
	requireCode(t, err, codes.PermissionDenied, `token "reader-a" has read access; CreateTask needs write access`)
	_, err = s.create(execTok, "a")
	requireCode(t, err, codes.PermissionDenied, `token "exec" has executor access; CreateTask needs write access`)
	_, err = s.create(writerA, "b")
	requireCode(t, err, codes.PermissionDenied, `not granted namespace "b"`)

	taskA, err := s.create(writerA, "a")
	require.NoError(t, err)
	taskB, err := s.create(writerB, "b")
	require.NoError(t, err)

	// Reading and acting on another namespace's task by id.
	got, err := readerA.GetTask(s.ctx, &coordinatorv1.GetTaskRequest{Id: taskA.GetId()})
	require.NoError(t, err)
	require.Equal(t, "a", got.GetTask().GetNamespace())
	_, err = readerA.GetTask(s.ctx, &coordinatorv1.GetTaskRequest{Id: taskB.GetId()})
	requireCode(t, err, codes.PermissionDenied, `token "reader-a" is not granted namespace "b"`)
	_, err = readerA.GetTask(s.ctx, &coordinatorv1.GetTaskRequest{Id: "no-such-task"})
	requireCode(t, err, codes.NotFound, "task no-such-task not found")
	_, err = writerA.CancelTask(s.ctx, &coordinatorv1.CancelTaskRequest{Id: taskB.GetId(), Reason: "not mine"})
	requireCode(t, err, codes.PermissionDenied, `namespace "b"`)
	_, err = writerA.CancelTask(s.ctx, &coordinatorv1.CancelTaskRequest{Id: "no-such-task"})
	requireCode(t, err, codes.NotFound, "not found")
	_, err = writerA.RetryTask(s.ctx, &coordinatorv1.RetryTaskRequest{Id: taskB.GetId()})
	requireCode(t, err, codes.PermissionDenied, `namespace "b"`)
	_, err = writerA.ResolveStep(s.ctx, &coordinatorv1.ResolveStepRequest{TaskId: taskB.GetId(), StepName: "first", Reason: "x"})
	requireCode(t, err, codes.PermissionDenied, `namespace "b"`)
	_, err = readerA.CancelTask(s.ctx, &coordinatorv1.CancelTaskRequest{Id: taskA.GetId()})
	requireCode(t, err, codes.PermissionDenied, "CancelTask needs write access")
	w, err := readerA.WatchTask(s.ctx, &coordinatorv1.WatchTaskRequest{Id: taskB.GetId()})
	require.NoError(t, err)
	_, err = w.Recv()
	requireCode(t, err, codes.PermissionDenied, `namespace "b"`)
	b, err := all.GetTask(s.ctx, &coordinatorv1.GetTaskRequest{Id: taskB.GetId()})
	require.NoError(t, err)
	require.Equal(t, coordinatorv1.State_STATE_PENDING, b.GetTask().GetState(), "the refused cancel changed nothing")

	// Templates.
	_, err = readerA.GetTemplate(s.ctx, &coordinatorv1.GetTemplateRequest{Namespace: "b", Name: "flow"})
	requireCode(t, err, codes.PermissionDenied, `namespace "b"`)
	tmpls, err := readerA.ListTemplates(s.ctx, &coordinatorv1.ListTemplatesRequest{})
	require.NoError(t, err)
	require.Len(t, tmpls.GetTemplates(), 1, "only granted namespaces are listed")
	require.Equal(t, "a", tmpls.GetTemplates()[0].GetNamespace())
	tmpls, err = all.ListTemplates(s.ctx, &coordinatorv1.ListTemplatesRequest{})
	require.NoError(t, err)
	require.Len(t, tmpls.GetTemplates(), 2)
	_, err = readerA.ListTemplates(s.ctx, &coordinatorv1.ListTemplatesRequest{Namespace: "b"})
	requireCode(t, err, codes.PermissionDenied, `namespace "b"`)

	// Task lists: one granted namespace is the filter; several need one.
	listed := func(c coordinatorv1.CoordinatorServiceClient, ns string) ([]string, error) {
		resp, err := c.ListTasks(s.ctx, &coordinatorv1.ListTasksRequest{Namespace: ns})
		var ids []string
		for _, t := range resp.GetTasks() {
			ids = append(ids, t.GetNamespace()+"/"+t.GetId())
		}
		return ids, err
	}
	ids, err := listed(readerA, "")
	require.NoError(t, err)
	require.Equal(t, []string{"a/" + taskA.GetId()}, ids)
	ids, err = listed(all, "")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"a/" + taskA.GetId(), "b/" + taskB.GetId()}, ids)
	_, err = listed(readerAB, "")
	requireCode(t, err, codes.PermissionDenied, "give a namespace filter")
	ids, err = listed(readerAB, "b")
	require.NoError(t, err)
	require.Equal(t, []string{"b/" + taskB.GetId()}, ids)
	_, err = listed(readerA, "b")
	requireCode(t, err, codes.PermissionDenied, `namespace "b"`)

	// Executor-facing calls need an executor token and a mesh certificate.
	meshCert := s.mesh.Issue(t, "some-executor").TLS
	_, err = coordinatorv1.NewCoordinatorServiceClient(s.conn("writer-a-token-0123456789", &meshCert)).
		RegisterExecutor(s.ctx, &coordinatorv1.RegisterExecutorRequest{Address: "127.0.0.1:1"})
	requireCode(t, err, codes.PermissionDenied, `token "writer-a" has write access; RegisterExecutor needs executor access`)
	_, err = execTok.ReportStepResult(s.ctx, &coordinatorv1.ReportStepResultRequest{})
	requireCode(t, err, codes.Unauthenticated, "ReportStepResult: a TLS client certificate is required")
	_, err = coordinatorv1.NewCoordinatorServiceClient(s.conn("exec-token-0123456789", &meshCert)).
		ReportStepResult(s.ctx, &coordinatorv1.ReportStepResultRequest{})
	requireCode(t, err, codes.InvalidArgument, "result is required")

	// Read tokens list executors; health needs no token at all.
	_, err = readerA.ListExecutors(s.ctx, &coordinatorv1.ListExecutorsRequest{})
	require.NoError(t, err)
	hc := healthpb.NewHealthClient(s.conn("", nil))
	for _, svc := range []string{"", "tasker.coordinator.v1.CoordinatorService"} {
		resp, err := hc.Check(s.ctx, &healthpb.HealthCheckRequest{Service: svc})
		require.NoError(t, err, svc)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	}
}

func TestSecurityExecutorsOverMutualTLS(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	all := s.client("all-token-0123456789")
	require.NoError(t, s.register(all, "a"))

	// An executor whose certificate comes from another CA: its own
	// registration carries no acceptable client certificate, and when a
	// legitimate caller hands its address over, the coordinator's dial
	// fails to verify it.
	rogue := authtest.NewCA(t, "rogue")
	_, rogueAddr := s.startExecutor(rogue.Issue(t, "rogue-executor"))
	meshCert := s.mesh.Issue(t, "registrar").TLS
	_, err := coordinatorv1.NewCoordinatorServiceClient(s.conn("exec-token-0123456789", &meshCert)).
		RegisterExecutor(s.ctx, &coordinatorv1.RegisterExecutorRequest{Address: rogueAddr})
	requireCode(t, err, codes.Unavailable, "certificate signed by unknown authority")

	goodID, _ := s.startExecutor(s.mesh.Issue(t, "good-executor"))
	require.Eventually(t, func() bool {
		ids := s.connected(all)
		return len(ids) == 1 && ids[0] == goodID
	}, 10*time.Second, 20*time.Millisecond)

	task, err := s.create(s.client("writer-a-token-0123456789"), "a")
	require.NoError(t, err)
	var last *coordinatorv1.Task
	require.Eventually(t, func() bool {
		resp, err := all.GetTask(s.ctx, &coordinatorv1.GetTaskRequest{Id: task.GetId()})
		require.NoError(t, err)
		last = resp.GetTask()
		return last.GetState() == coordinatorv1.State_STATE_COMPLETE
	}, 20*time.Second, 20*time.Millisecond)
	for _, st := range last.GetSteps() {
		require.Equal(t, coordinatorv1.State_STATE_COMPLETE, st.GetState(), st.GetName())
	}
	require.Equal(t, []string{goodID}, s.connected(all), "the rogue executor never joined")
}

func TestSecurityClientCertificatesRequired(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{requireClientCerts: true})
	tok := "all-token-0123456789"
	_, err := coordinatorv1.NewCoordinatorServiceClient(s.conn(tok, nil)).ListExecutors(s.ctx, &coordinatorv1.ListExecutorsRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err), "no client certificate: %v", err)
	rogue := authtest.NewCA(t, "rogue").Issue(t, "caller").TLS
	_, err = coordinatorv1.NewCoordinatorServiceClient(s.conn(tok, &rogue)).ListExecutors(s.ctx, &coordinatorv1.ListExecutorsRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err), "client certificate from another CA: %v", err)
	good := s.api.Issue(t, "caller").TLS
	_, err = coordinatorv1.NewCoordinatorServiceClient(s.conn(tok, &good)).ListExecutors(s.ctx, &coordinatorv1.ListExecutorsRequest{})
	require.NoError(t, err)
	_, err = coordinatorv1.NewCoordinatorServiceClient(s.conn("", &good)).ListExecutors(s.ctx, &coordinatorv1.ListExecutorsRequest{})
	requireCode(t, err, codes.Unauthenticated, "no bearer token")
}

func TestSecurityPlaintextClientRefused(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { _ = cc.Close() }()
	_, err = healthpb.NewHealthClient(cc).Check(s.ctx, &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
}

func TestSecurityExecutorCertificatesWithoutTokens(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{tokensOff: true})
	anyone := s.client("")
	require.NoError(t, s.register(anyone, "a"), "tokens off: any TLS caller may write")
	_, err := anyone.RegisterExecutor(s.ctx, &coordinatorv1.RegisterExecutorRequest{Address: "127.0.0.1:1"})
	requireCode(t, err, codes.Unauthenticated, "a TLS client certificate is required")
	apiCert := s.api.Issue(t, "api-caller").TLS
	_, err = coordinatorv1.NewCoordinatorServiceClient(s.conn("", &apiCert)).
		ReportStepResult(s.ctx, &coordinatorv1.ReportStepResultRequest{})
	requireCode(t, err, codes.PermissionDenied, `client certificate "api-caller" does not chain to the CA this call needs`)
	id, _ := s.startExecutor(s.mesh.Issue(t, "executor"))
	require.Eventually(t, func() bool { return len(s.connected(anyone)) == 1 && s.connected(anyone)[0] == id },
		10*time.Second, 20*time.Millisecond)
}

// A coordinator with Security served without its ServerOptions would skip
// the interceptors; it refuses every call instead of serving unchecked.
func TestSecurityFailsClosedWithoutInterceptors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	toks, err := auth.ParseTokens([]byte(securityTokens))
	require.NoError(t, err)
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "tasker.db"), Logger: testLogger(t)})
	require.NoError(t, err)
	coord, err := coordinator.New(coordinator.Config{Store: st, Logger: testLogger(t), Security: coordinator.Security{Authenticator: toks}})
	require.NoError(t, err)
	require.NoError(t, coord.Start(ctx))
	srv := grpc.NewServer()
	coord.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		_ = coord.Stop(context.Background())
		_ = st.Close()
	})
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerToken("all-token-0123456789", false)))
	require.NoError(t, err)
	defer func() { _ = cc.Close() }()
	c := coordinatorv1.NewCoordinatorServiceClient(cc)
	_, err = c.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
	requireCode(t, err, codes.Unauthenticated, "Coordinator.ServerOptions()")
	_, err = c.GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: "x"})
	requireCode(t, err, codes.Unauthenticated, "Coordinator.ServerOptions()")
	_, err = c.ListTasks(ctx, &coordinatorv1.ListTasksRequest{})
	requireCode(t, err, codes.Unauthenticated, "Coordinator.ServerOptions()")
}
