package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/auth/authtest"
)

func x509Pool() *x509.CertPool { return x509.NewCertPool() }

func tlsDial(roots *x509.CertPool, cert *tls.Certificate) grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(auth.ClientTLS(roots, cert)))
}

func TestTLSClientCertificatesPerMethod(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mesh := authtest.NewCA(t, "mesh-ca")
	api := authtest.NewCA(t, "api-ca")
	rogue := authtest.NewCA(t, "rogue-ca")
	server := mesh.Issue(t, "coordinator")
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(mesh.Cert)
	clientCAs.AddCert(api.Cert)

	// Check is open to any TLS caller; Watch stands for an executor-only
	// method and needs a certificate from the mesh CA.
	g, err := auth.NewGuard(auth.GuardConfig{
		Methods:   map[string]auth.Access{checkMethod: auth.AccessRead, watchMethod: auth.AccessExecutor},
		CertRoots: mesh.Pool(), CertAccess: auth.AccessExecutor,
	})
	require.NoError(t, err)
	addr, _ := serveGuarded(t, g, grpc.Creds(credentials.NewTLS(auth.ServerTLS(server.TLS, clientCAs, tls.VerifyClientCertIfGiven))))
	check := &healthpb.HealthCheckRequest{Service: "svc"}
	watch := func(c healthpb.HealthClient) error {
		w, err := c.Watch(ctx, check)
		if err != nil {
			return err
		}
		_, err = w.Recv()
		return err
	}

	_, err = healthClient(t, addr).Check(ctx, check)
	require.Error(t, err, "a plaintext client cannot talk to a TLS server")
	require.Equal(t, codes.Unavailable, status.Code(err))

	_, err = healthClient(t, addr, tlsDial(api.Pool(), nil)).Check(ctx, check)
	require.Error(t, err, "the server's certificate is not from the CA the client trusts")

	noCert := healthClient(t, addr, tlsDial(mesh.Pool(), nil))
	_, err = noCert.Check(ctx, check)
	require.NoError(t, err, "API callers need no certificate here")
	err = watch(noCert)
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "a TLS client certificate is required")

	apiCert := api.Issue(t, "api-client")
	err = watch(healthClient(t, addr, tlsDial(mesh.Pool(), &apiCert.TLS)))
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a certificate the handshake accepted, but not from the mesh CA")
	require.Contains(t, status.Convert(err).Message(), `client certificate "api-client" does not chain to the CA this call needs`)

	meshCert := mesh.Issue(t, "executor-1")
	require.NoError(t, watch(healthClient(t, addr, tlsDial(mesh.Pool(), &meshCert.TLS))))

	// A Go client offers only a certificate from a CA the server names, so
	// a certificate from an unknown CA is never sent: that caller is one
	// without a certificate, and executor-only methods stay closed to it.
	rogueCert := rogue.Issue(t, "intruder")
	err = watch(healthClient(t, addr, tlsDial(mesh.Pool(), &rogueCert.TLS)))
	require.Equal(t, codes.Unauthenticated, status.Code(err))
}

func TestTLSRequiredClientCertificates(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ca := authtest.NewCA(t, "ca")
	other := authtest.NewCA(t, "other")
	g, err := auth.NewGuard(auth.GuardConfig{Methods: healthRules()})
	require.NoError(t, err)
	addr, _ := serveGuarded(t, g, grpc.Creds(credentials.NewTLS(auth.ServerTLS(ca.Issue(t, "server").TLS, ca.Pool(), tls.RequireAndVerifyClientCert))))
	check := &healthpb.HealthCheckRequest{Service: "svc"}

	_, err = healthClient(t, addr, tlsDial(ca.Pool(), nil)).Check(ctx, check)
	require.Equal(t, codes.Unavailable, status.Code(err), "no client certificate")
	bad := other.Issue(t, "client")
	_, err = healthClient(t, addr, tlsDial(ca.Pool(), &bad.TLS)).Check(ctx, check)
	require.Equal(t, codes.Unavailable, status.Code(err), "client certificate from another CA")
	good := ca.Issue(t, "client")
	_, err = healthClient(t, addr, tlsDial(ca.Pool(), &good.TLS)).Check(ctx, check)
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), auth.ServerTLS(good.TLS, nil, tls.NoClientCert).MinVersion)
}

func TestBearerTokenRequiringTLSIsNotSentInPlaintext(t *testing.T) {
	t.Parallel()
	g, err := auth.NewGuard(auth.GuardConfig{Methods: healthRules(), Public: []string{auth.HealthService}})
	require.NoError(t, err)
	addr, _ := serveGuarded(t, g)
	_, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerToken("secret-token-0123456789", true)))
	require.ErrorContains(t, err, "require transport level security")

	// Without requireTLS the same token goes over plaintext, for loopback.
	resp, err := healthClient(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerToken("secret-token-0123456789", false))).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "svc"})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
}

func TestCheckPlaintextListen(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:7070", "127.0.0.2:0", "[::1]:7070", "localhost:7070"} {
		require.NoError(t, auth.CheckPlaintextListen(addr), addr)
	}
	for _, addr := range []string{"0.0.0.0:7070", ":7070", "[::]:7070", "10.1.2.3:7070", "example.com:7070"} {
		err := auth.CheckPlaintextListen(addr)
		require.ErrorIs(t, err, auth.ErrPlaintextNotLoopback, addr)
		require.ErrorContains(t, err, addr)
	}
	require.ErrorContains(t, auth.CheckPlaintextListen("no-port"), "missing port")
}

func TestLoadTLSFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := authtest.NewCA(t, "ca")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	certFile, keyFile := ca.Issue(t, "svc").WriteFiles(t, dir, "svc")

	pool, err := auth.LoadCertPool(caFile)
	require.NoError(t, err)
	require.True(t, pool.Equal(ca.Pool()))
	_, err = auth.LoadKeyPair(certFile, keyFile)
	require.NoError(t, err)

	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not pem"), 0o600))
	_, err = auth.LoadCertPool(garbage)
	require.ErrorContains(t, err, "no PEM certificates")
	_, err = auth.LoadCertPool(filepath.Join(dir, "missing.pem"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = auth.LoadKeyPair(certFile, "")
	require.ErrorContains(t, err, "given without its key file")
	_, err = auth.LoadKeyPair("", keyFile)
	require.ErrorContains(t, err, "given without its certificate")
	_, err = auth.LoadKeyPair(keyFile, certFile)
	require.ErrorContains(t, err, "load certificate")
}
