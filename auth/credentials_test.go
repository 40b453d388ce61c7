package auth_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/auth/authtest"
)

// serveRecordingAuth serves health on a loopback port and sends the
// authorization metadata of every call on the returned channel.
func serveRecordingAuth(t *testing.T, opts ...grpc.ServerOption) (string, <-chan []string) {
	t.Helper()
	seen := make(chan []string, 16)
	opts = append(opts, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		seen <- md.Get(auth.AuthorizationHeader)
		return h(ctx, req)
	}))
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), seen
}

// throughAuthority dials target but connects to addr, so a test can call a
// loopback server under a name that is not loopback.
func throughAuthority(addr string) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	})
}

func TestBearerTokenTLSOrLoopback(t *testing.T) {
	t.Parallel()
	const secret = "executor-secret-0123456789"
	creds := grpc.WithPerRPCCredentials(auth.BearerTokenTLSOrLoopback(secret))
	addr, seen := serveRecordingAuth(t)
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)

	for _, target := range []string{addr, "localhost:" + port, "passthrough:///[::1]:" + port} {
		plain := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), creds, throughAuthority(addr)}
		_, err := healthClient(t, target, plain...).Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err, target)
		require.Equal(t, []string{"Bearer " + secret}, <-seen, "plaintext to loopback %s carries the token", target)
	}

	plain := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), creds, throughAuthority(addr)}
	_, err = healthClient(t, "passthrough:///10.1.2.3:"+port, plain...).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `refusing to send a bearer token in plaintext to "10.1.2.3"`)
	require.Empty(t, seen, "the call never reached the server")

	// Over TLS the token goes to any address.
	ca := authtest.NewCA(t, "ca")
	leaf := ca.Issue(t, "server")
	tlsAddr, tlsSeen := serveRecordingAuth(t, grpc.Creds(credentials.NewTLS(auth.ServerTLS(leaf.TLS, nil, tls.NoClientCert))))
	_, tlsPort, err := net.SplitHostPort(tlsAddr)
	require.NoError(t, err)
	cfg := auth.ClientTLS(ca.Pool(), nil)
	cfg.ServerName = "localhost"
	_, err = healthClient(t, "passthrough:///10.1.2.3:"+tlsPort, grpc.WithTransportCredentials(credentials.NewTLS(cfg)), creds, throughAuthority(tlsAddr)).
		Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, []string{"Bearer " + secret}, <-tlsSeen)
}
