package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/auth/authtest"
)

// The REST API reaches its coordinator over the transport security the
// coordinator serves: TLS verified by the coordinator's own certificate,
// and that certificate as the client certificate where every caller must
// present one. Executor methods still need the HTTP caller's own
// certificate from the mesh CA, exactly as over gRPC.

// selfSigned writes a certificate for name only (no loopback address, as
// for a coordinator with a public name) and its key, and returns their
// paths and a pool trusting it.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// httpsREST is a restAPI over HTTPS, presenting clientCert when given.
func httpsREST(t *testing.T, opts coordinatorOptions, roots *x509.CertPool, serverName string, clientCert *tls.Certificate) *restAPI {
	t.Helper()
	a := startREST(t, opts)
	cfg := auth.ClientTLS(roots, clientCert)
	cfg.ServerName = serverName
	a.base = "https://" + a.rc.httpAddr
	a.client = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(a.client.CloseIdleConnections)
	return a
}

// A certificate that names neither 127.0.0.1 nor localhost: the gateway
// still reaches its coordinator, since it checks for that exact
// certificate rather than for a name.
func TestRESTAPIOverTLSWithAPublicName(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir, "coordinator.example")
	a := httpsREST(t, coordinatorOptions{security: coordinatorSecurityFlags{files: tlsFiles{cert: cert, key: key}}},
		pool, "coordinator.example", nil)
	a.registerTemplates("")
	task := a.create("", "blocked", nil)
	var got struct {
		Task apiTask `json:"task"`
	}
	a.call(http.MethodGet, "/api/v1/tasks/"+task.ID, "", nil, &got)
	require.Equal(t, task.ID, got.Task.ID)
}

// resultBody is a ReportStepResult whose result is empty: past the
// certificate check, the coordinator refuses it as InvalidArgument.
var resultBody = map[string]any{}

func TestRESTAPIOverMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mesh, api := authtest.NewCA(t, "mesh"), authtest.NewCA(t, "api")
	cert, key := mesh.Issue(t, "coordinator").WriteFiles(t, dir, "coordinator")
	meshFile, apiFile := mesh.WriteFile(t, dir, "mesh.pem"), api.WriteFile(t, dir, "api.pem")
	apiClient, meshClient := api.Issue(t, "dashboard").TLS, mesh.Issue(t, "executor").TLS

	t.Run("EveryCallerPresentsACertificate", func(t *testing.T) {
		t.Parallel()
		// --tls-client-ca: the gRPC listener requires a certificate of
		// every caller, the gateway included (it shows the coordinator's).
		opts := coordinatorOptions{security: coordinatorSecurityFlags{
			files: tlsFiles{cert: cert, key: key, ca: meshFile}, clientCA: apiFile,
		}}
		a := httpsREST(t, opts, mesh.Pool(), "", &apiClient)
		a.registerTemplates("")
		a.call(http.MethodGet, "/api/v1/tasks", "", nil, nil)

		// The coordinator's certificate, which the gateway presents, does
		// not make an API caller an executor: the caller's own must come
		// from the mesh CA, as over gRPC.
		a.refused(http.MethodPost, "/api/v1/results", "", resultBody, http.StatusForbidden, 7,
			`ReportStepResult: client certificate "dashboard" does not chain to the CA this call needs`)
		a.refused(http.MethodPost, "/api/v1/executors", "", map[string]any{"address": "127.0.0.1:1"}, http.StatusForbidden, 7,
			`RegisterExecutor: client certificate "dashboard" does not chain`)
		executor := httpsREST(t, opts, mesh.Pool(), "", &meshClient)
		executor.refused(http.MethodPost, "/api/v1/results", "", resultBody, http.StatusBadRequest, 3, "result is required")
	})

	t.Run("OnlyExecutorsPresentCertificates", func(t *testing.T) {
		t.Parallel()
		// --tls-ca alone: certificates are asked of executors only, and
		// the HTTP listener asks none, so no HTTP caller is an executor.
		opts := coordinatorOptions{security: coordinatorSecurityFlags{files: tlsFiles{cert: cert, key: key, ca: meshFile}}}
		a := httpsREST(t, opts, mesh.Pool(), "", nil)
		a.registerTemplates("")
		a.call(http.MethodGet, "/api/v1/tasks", "", nil, nil)
		a.refused(http.MethodPost, "/api/v1/results", "", resultBody, http.StatusUnauthorized, 16,
			"ReportStepResult: a TLS client certificate is required")
	})
}
