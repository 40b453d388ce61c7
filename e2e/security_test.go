package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/auth/authtest"
)

// runTasker runs the CLI with args and extra environment, returning its
// output and exit error.
func runTasker(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// waitForLog waits until the process log contains every one of want.
func waitForLog(t *testing.T, p *process, want ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(p.log)
		for _, w := range want {
			if !bytes.Contains(b, []byte(w)) {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "log of %s never showed %q", p.log, want)
}

// TestSecurityClusterMutualTLSAndTokens runs a coordinator and executors as
// processes with mutual TLS between them, client certificates required of
// every caller, a tokens file and a JWT key, and drives them through the
// CLI: a task completes for a caller with the right certificate and token,
// and every missing or wrong credential is refused with its own status.
func TestSecurityClusterMutualTLSAndTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mesh, api, rogue := authtest.NewCA(t, "mesh"), authtest.NewCA(t, "api"), authtest.NewCA(t, "rogue")
	meshCA := mesh.WriteFile(t, dir, "mesh-ca.pem")
	apiCA := api.WriteFile(t, dir, "api-ca.pem")
	coordCert, coordKey := mesh.Issue(t, "coordinator").WriteFiles(t, dir, "coordinator")
	execCert, execKey := mesh.Issue(t, "executor").WriteFiles(t, dir, "executor")
	rogueCert, rogueKey := rogue.Issue(t, "rogue-executor").WriteFiles(t, dir, "rogue")
	cliCert, cliKey := api.Issue(t, "operator").WriteFiles(t, dir, "cli")

	tokens := filepath.Join(dir, "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte(`
- {name: dashboards, token: reader-token-0123456789, namespaces: ["*"], access: read}
- {name: executors, token: executor-token-0123456789, access: executor}
`), 0o600))
	secret := []byte("e2e-jwt-secret-0123456789abcdef0123456789")
	jwtKey := filepath.Join(dir, "jwt.key")
	require.NoError(t, os.WriteFile(jwtKey, secret, 0o600))
	writer, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "deployer", "namespaces": []string{"demo", "tasker"}, "access": "write", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	require.NoError(t, err)
	expired, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "old", "namespaces": []string{"*"}, "access": "write", "exp": time.Now().Add(-time.Minute).Unix(),
	}).SignedString(secret)
	require.NoError(t, err)

	coord := freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coord, "--db", filepath.Join(dir, "tasker.db"), "--log-level", "debug",
		"--tls-cert", coordCert, "--tls-key", coordKey, "--tls-ca", meshCA, "--tls-client-ca", apiCA,
		"--tokens-file", tokens, "--jwt-key", jwtKey)
	start(t, "executor", "executor", "--listen", freeAddr(t), "--coordinator", coord, "--id", "good-exec", "--log-level", "debug",
		"--tls-cert", execCert, "--tls-key", execKey, "--tls-ca", meshCA, "--token", "executor-token-0123456789")
	rogueExec := start(t, "rogue-executor", "executor", "--listen", freeAddr(t), "--coordinator", coord, "--id", "rogue-exec", "--log-level", "debug",
		"--tls-cert", rogueCert, "--tls-key", rogueKey, "--tls-ca", meshCA, "--token", "executor-token-0123456789")

	tlsFlags := []string{"--coordinator", coord, "--tls-ca", meshCA, "--tls-cert", cliCert, "--tls-key", cliKey}
	cli := func(token string, args ...string) (string, string, error) {
		var env []string
		if token != "" {
			env = []string{"TASKER_TOKEN=" + token}
		}
		return runTasker(t, env, append(args, tlsFlags...)...)
	}
	require.Eventually(t, func() bool {
		out, _, err := cli("reader-token-0123456789", "executors", "-o", "json")
		return err == nil && strings.Contains(out, `"id":"good-exec"`) && strings.Contains(out, `"connected":true`)
	}, 30*time.Second, 100*time.Millisecond, "the executor did not connect over mutual TLS")

	// The rogue executor has no certificate the coordinator accepts, so its
	// registration fails in the handshake and it never joins.
	// (How the refusal reads depends on timing: "certificate required" when
	// the TLS alert arrives first, "broken pipe" when the close does.)
	waitForLog(t, rogueExec, "register with coordinator failed")
	out, _, err := cli("reader-token-0123456789", "executors", "-o", "json")
	require.NoError(t, err)
	require.NotContains(t, out, "rogue-exec")

	files, err := filepath.Glob(filepath.Join(repoRoot(), "examples", "templates", "*.yaml"))
	require.NoError(t, err)
	out, errOut, err := cli(writer, append([]string{"template", "apply"}, files...)...)
	require.NoError(t, err, errOut)
	require.Equal(t, len(files), strings.Count(out, "registered "), out)
	out, errOut, err = cli(writer, "task", "create", "demo/order_fulfillment", "--context", `{"order_id":"S-1"}`, "--wait", "-o", "json")
	require.NoError(t, err, errOut)
	task := decodeTask(t, out)
	require.Equal(t, "complete", task.State)
	for _, s := range task.Steps {
		require.Equal(t, "complete", s.State, s.Name)
	}
	out, errOut, err = cli("reader-token-0123456789", "task", "get", task.ID, "-o", "json")
	require.NoError(t, err, errOut)
	require.Equal(t, task.ID, decodeTask(t, out).ID)

	// Refusals, each with its own status.
	create := []string{"task", "create", "demo/order_fulfillment", "--context", `{"order_id":"S-2"}`}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"no token", "", `no bearer token: send metadata "authorization: Bearer <token>" (Unauthenticated)`},
		{"wrong token", "not-a-real-token-0123456789", "token not recognised (Unauthenticated)"},
		{"expired token", expired, "token is expired (Unauthenticated)"},
		{"read token", "reader-token-0123456789", `token "dashboards" has read access; CreateTask needs write access (PermissionDenied)`},
		{"executor token", "executor-token-0123456789", `token "executors" has executor access; CreateTask needs write access (PermissionDenied)`},
	} {
		_, errOut, err := cli(tc.token, create...)
		require.Error(t, err, tc.name)
		require.Contains(t, errOut, tc.want, tc.name)
	}
	_, errOut, err = cli(writer, "task", "create", "ops/anything", "--context", `{}`)
	require.Error(t, err)
	require.Contains(t, errOut, `token "deployer" is not granted namespace "ops" (granted: demo, tasker) (PermissionDenied)`)

	// Transport refusals: plaintext, no client certificate, a client
	// certificate from another CA.
	_, _, err = runTasker(t, []string{"TASKER_TOKEN=" + writer}, "task", "list", "--coordinator", coord, "--timeout", "5s")
	require.Error(t, err, "plaintext against a TLS coordinator")
	_, _, err = runTasker(t, []string{"TASKER_TOKEN=" + writer}, "task", "list", "--coordinator", coord, "--tls-ca", meshCA, "--timeout", "5s")
	require.Error(t, err, "no client certificate")
	_, _, err = runTasker(t, []string{"TASKER_TOKEN=" + writer}, "task", "list", "--coordinator", coord, "--tls-ca", meshCA,
		"--tls-cert", rogueCert, "--tls-key", rogueKey, "--timeout", "5s")
	require.Error(t, err, "client certificate from another CA")

	// Health needs TLS (and here a client certificate) but no token.
	cert, err := auth.LoadKeyPair(cliCert, cliKey)
	require.NoError(t, err)
	cc, err := grpc.NewClient(coord, grpc.WithTransportCredentials(credentials.NewTLS(auth.ClientTLS(mesh.Pool(), &cert))))
	require.NoError(t, err)
	defer func() { _ = cc.Close() }()
	resp, err := healthpb.NewHealthClient(cc).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "tasker.coordinator.v1.CoordinatorService"})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
}

// TestSecurityPlaintextRefusedOffLoopback starts the real binary on all
// interfaces without TLS: both server commands refuse, naming the fix, and
// --insecure lets the coordinator start anyway.
func TestSecurityPlaintextRefusedOffLoopback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, port, err := net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)
	for _, args := range [][]string{
		{"coordinator", "--listen", "0.0.0.0:" + port, "--db", filepath.Join(dir, "refused.db")},
		{"executor", "--listen", "0.0.0.0:" + port},
		{"dev", "--listen", "0.0.0.0:" + port, "--once"},
	} {
		_, errOut, err := runTasker(t, nil, args...)
		var exitErr *exec.ExitError
		require.ErrorAs(t, err, &exitErr, args)
		require.Contains(t, errOut, `refusing to serve plaintext gRPC on a non-loopback address "0.0.0.0:`+port+`"`, args)
		require.Contains(t, errOut, "give --tls-cert and --tls-key to serve TLS, or --insecure to serve plaintext anyway", args)
	}
	_, err = os.Stat(filepath.Join(dir, "refused.db"))
	require.ErrorIs(t, err, os.ErrNotExist, "the coordinator refused before creating its store")

	// Incomplete or broken security settings stop the start, naming the flag.
	ca := authtest.NewCA(t, "ca")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	badTokens := filepath.Join(dir, "tokens.yaml")
	require.NoError(t, os.WriteFile(badTokens, []byte("- {name: ci, token: short, namespaces: [a], access: write}\n"), 0o600))
	shortKey := filepath.Join(dir, "jwt.key")
	require.NoError(t, os.WriteFile(shortKey, []byte("short"), 0o600))
	loop, db := freeAddr(t), filepath.Join(dir, "refused.db")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"coordinator", "--listen", loop, "--db", db, "--tls-ca", caFile}, "--tls-ca and --tls-client-ca need --tls-cert and --tls-key"},
		{[]string{"executor", "--listen", loop, "--tls-ca", caFile}, "--tls-ca needs --tls-cert and --tls-key"},
		{[]string{"coordinator", "--listen", loop, "--db", db, "--tokens-file", badTokens}, `--tokens-file: tokens file ` + badTokens + `: entry 1 ("ci"): token is 5 characters`},
		{[]string{"coordinator", "--listen", loop, "--db", db, "--jwt-key", shortKey}, "--jwt-key: jwt key " + shortKey + ": HMAC secret is 5 bytes"},
		{[]string{"coordinator", "--listen", loop, "--db", db, "--tls-cert", caFile}, "certificate " + caFile + " given without its key file"},
	} {
		_, errOut, err := runTasker(t, nil, tc.args...)
		require.Error(t, err, tc.args)
		require.Contains(t, errOut, tc.want, tc.args)
	}

	p := start(t, "insecure-coordinator", "coordinator", "--listen", "0.0.0.0:"+port, "--db", filepath.Join(dir, "insecure.db"), "--insecure")
	waitForLog(t, p, "coordinator serving", "tls=off")
}

// TestSecurityTLSWithoutClientCertificates serves one-way TLS (no --tls-ca
// on the server side) with tokens: a CLI that trusts the server's CA and
// sends a token works without a client certificate.
func TestSecurityTLSWithoutClientCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := authtest.NewCA(t, "ca")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	certFile, keyFile := ca.Issue(t, "coordinator").WriteFiles(t, dir, "coordinator")
	tokens := filepath.Join(dir, "tokens.json")
	require.NoError(t, os.WriteFile(tokens, []byte(`[{"name":"ops","token":"ops-token-0123456789","namespaces":["*"],"access":"write"}]`), 0o600))
	coord := freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coord, "--db", filepath.Join(dir, "tasker.db"),
		"--tls-cert", certFile, "--tls-key", keyFile, "--tokens-file", tokens)
	require.Eventually(t, func() bool {
		_, _, err := runTasker(t, nil, "executors", "--coordinator", coord, "--tls-ca", caFile, "--token", "ops-token-0123456789")
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
	_, errOut, err := runTasker(t, nil, "executors", "--coordinator", coord, "--tls-ca", caFile)
	require.Error(t, err)
	require.Contains(t, errOut, "(Unauthenticated)")
	_, errOut, err = runTasker(t, nil, "executors", "--coordinator", coord, "--token", "ops-token-0123456789", "--timeout", "5s")
	require.Error(t, err, "plaintext client: %s", errOut)
	require.Equal(t, uint16(tls.VersionTLS12), auth.ClientTLS(nil, nil).MinVersion)
}
