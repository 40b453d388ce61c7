package auth_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/auth"
)

// The guard tests protect the standard health service, which every server
// can host, as if it were an API: Check needs read, Watch (a stream) write,
// and List is left out of the rules so it must be refused.
const (
	checkMethod = "/grpc.health.v1.Health/Check"
	watchMethod = "/grpc.health.v1.Health/Watch"
)

func healthRules() map[string]auth.Access {
	return map[string]auth.Access{checkMethod: auth.AccessRead, watchMethod: auth.AccessWrite}
}

// seen records the principal each call's handler received, so a test can
// prove the guard hands it on (to unary and stream handlers alike).
type seen struct {
	mu    sync.Mutex // guards names
	names []string
}

func (s *seen) record(ctx context.Context) {
	name := "<none>"
	if p, ok := auth.FromContext(ctx); ok {
		name = p.Name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names = append(s.names, name)
}

func (s *seen) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) == 0 {
		return ""
	}
	return s.names[len(s.names)-1]
}

// serveGuarded serves the health service behind g (plus opts) on a
// loopback port and returns its address and the principal recorder.
func serveGuarded(t *testing.T, g *auth.Guard, opts ...grpc.ServerOption) (string, *seen) {
	t.Helper()
	rec := &seen{}
	opts = append(opts,
		grpc.ChainUnaryInterceptor(g.Unary, func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			rec.record(ctx)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(g.Stream, func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			rec.record(ss.Context())
			return h(srv, ss)
		}))
	srv := grpc.NewServer(opts...)
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), rec
}

func healthClient(t *testing.T, addr string, opts ...grpc.DialOption) healthpb.HealthClient {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cc, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return healthpb.NewHealthClient(cc)
}

func withToken(tok string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(auth.BearerToken(tok, false))
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestGuardTokensOverGRPC(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	toks, err := auth.ParseTokens([]byte(`
- {name: reader, token: reader-token-0123456789, namespaces: [a], access: read}
- {name: writer, token: writer-token-0123456789, namespaces: [a], access: write}
- {name: exec, token: executor-token-0123456789, access: executor}
`))
	require.NoError(t, err)
	logs := &syncBuffer{}
	g, err := auth.NewGuard(auth.GuardConfig{Authenticator: toks, Methods: healthRules(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.NoError(t, err)
	require.True(t, g.TokensEnabled())
	addr, rec := serveGuarded(t, g)
	check := &healthpb.HealthCheckRequest{Service: "svc"}

	_, err = healthClient(t, addr).Check(ctx, check)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "no bearer token")

	_, err = healthClient(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), withToken("made-up-token-0123456789")).Check(ctx, check)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "token not recognised")

	reader := healthClient(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), withToken("reader-token-0123456789"))
	resp, err := reader.Check(ctx, check)
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	require.Equal(t, "reader", rec.last(), "the handler sees who called")

	// The stream interceptor: read is not enough for Watch, write is, and
	// the stream's handler sees the principal too.
	w, err := reader.Watch(ctx, check)
	require.NoError(t, err)
	_, err = w.Recv()
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `token "reader" has read access; Watch needs write access`)

	writer := healthClient(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), withToken("writer-token-0123456789"))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err = writer.Watch(wctx, check)
	require.NoError(t, err)
	got, err := w.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, got.GetStatus())
	require.Equal(t, "writer", rec.last())
	cancel()

	// An executor token is not an API token.
	_, err = healthClient(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), withToken("executor-token-0123456789")).Check(ctx, check)
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `token "exec" has executor access; Check needs read access`)

	// A method without a rule is closed to everyone, even a valid token.
	_, err = writer.List(ctx, &healthpb.HealthListRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "/grpc.health.v1.Health/List is not open to any caller")

	require.Contains(t, logs.String(), "call refused")
	require.Contains(t, logs.String(), "code=Unauthenticated")
	require.NotContains(t, logs.String(), "made-up-token", "tokens never reach the logs")
}

func TestGuardPublicMethodsAndTokensOff(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	toks, err := auth.ParseTokens([]byte(`[{name: r, token: reader-token-0123456789, namespaces: [a], access: read}]`))
	require.NoError(t, err)
	g, err := auth.NewGuard(auth.GuardConfig{Authenticator: toks, Methods: healthRules(), Public: []string{auth.HealthService}})
	require.NoError(t, err)
	addr, rec := serveGuarded(t, g)
	_, err = healthClient(t, addr).Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	require.NoError(t, err, "a public service needs no token")
	require.Equal(t, "<none>", rec.last(), "public calls carry no principal")

	off, err := auth.NewGuard(auth.GuardConfig{Methods: healthRules()})
	require.NoError(t, err)
	require.False(t, off.TokensEnabled())
	addr, rec = serveGuarded(t, off)
	_, err = healthClient(t, addr).Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	require.NoError(t, err, "with tokens off every caller passes")
	require.Equal(t, "anonymous", rec.last())
	_, err = healthClient(t, addr).List(ctx, &healthpb.HealthListRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "unlisted methods stay closed with tokens off")
}

func TestNewGuardRejectsIncompleteConfig(t *testing.T) {
	t.Parallel()
	_, err := auth.NewGuard(auth.GuardConfig{Methods: map[string]auth.Access{checkMethod: auth.AccessNone}})
	require.ErrorContains(t, err, "has no access class")
	_, err = auth.NewGuard(auth.GuardConfig{CertRoots: x509Pool()})
	require.ErrorContains(t, err, "CertRoots needs CertAccess")
}
