package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tasker-go/tasker/auth/authtest"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

const testExecutorSecret = "executor-secret-0123456789"

// serveExecutor runs an executor until the test ends.
func serveExecutor(t *testing.T, opts executorOptions) (*runningExecutor, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if opts.listen == "" {
		opts.listen = "127.0.0.1:0"
	}
	opts.log, opts.capacity = discardLog(), 2
	re, err := runExecutor(ctx, opts)
	if err != nil {
		cancel()
		return nil, err
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-re.done)
	})
	return re, nil
}

func TestExecutorOffLoopbackNeedsCallerAuthentication(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := authtest.NewCA(t, "ca")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	cert, key := ca.Issue(t, "executor").WriteFiles(t, dir, "executor")
	oneWay := tlsFiles{cert: cert, key: key}

	_, err := serveExecutor(t, executorOptions{listen: "0.0.0.0:0", tls: oneWay})
	require.ErrorContains(t, err, `refusing to serve the executor on non-loopback address "0.0.0.0:0" to callers it cannot authenticate`)
	require.ErrorContains(t, err, "give --tls-ca (mutual TLS: coordinators must present a certificate from it) or --executor-secret (or TASKER_EXECUTOR_SECRET: coordinators must send it)")
	require.ErrorContains(t, err, "or --insecure to serve anyway")

	_, err = serveExecutor(t, executorOptions{listen: "0.0.0.0:0", tls: oneWay, secret: "short"})
	require.ErrorContains(t, err, "--executor-secret: 5 characters; use at least 16")

	for name, opts := range map[string]executorOptions{
		"secret":     {listen: "0.0.0.0:0", tls: oneWay, secret: testExecutorSecret},
		"mutual TLS": {listen: "0.0.0.0:0", tls: tlsFiles{ca: caFile, cert: cert, key: key}},
		"insecure":   {listen: "0.0.0.0:0", tls: oneWay, allowPlaintext: true},
		"loopback":   {listen: "127.0.0.1:0"},
	} {
		_, err := serveExecutor(t, opts)
		require.NoError(t, err, name)
	}
}

func TestExecutorSecretFromEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := authtest.NewCA(t, "ca")
	cert, key := ca.Issue(t, "executor").WriteFiles(t, dir, "executor")
	args := []string{"executor", "--listen", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key, "--log-level", "error"}

	res := runRefused(t, args...)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "--executor-secret")

	// The command was cancelled before it started, so it stops at once
	// once the flags pass.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	env := cliEnvFor(map[string]string{envExecutorSecret: testExecutorSecret})
	var errOut bytes.Buffer
	env.Stdout, env.Stderr = io.Discard, &lockedWriter{w: &errOut}
	require.Equal(t, 0, run(ctx, args, env), errOut.String())
}

func TestCoordinatorSendsExecutorSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(name, secret string) *runningCoordinator {
		rc, err := startCoordinator(t.Context(), coordinatorOptions{
			listen: "127.0.0.1:0", log: discardLog(), grace: time.Second,
			store:    storeFlags{db: filepath.Join(dir, name+".db"), sync: "normal"},
			security: coordinatorSecurityFlags{executorSecret: secret},
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, rc.stop()) })
		return rc
	}
	_, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0", log: discardLog(), store: storeFlags{db: filepath.Join(dir, "short.db"), sync: "normal"},
		security: coordinatorSecurityFlags{executorSecret: "short"},
	})
	require.ErrorContains(t, err, "--executor-secret: 5 characters; use at least 16")

	withSecret := start("with", testExecutorSecret)
	ex, err := serveExecutor(t, executorOptions{coordinator: withSecret.addr, secret: testExecutorSecret})
	require.NoError(t, err)
	c := coordinatorClient(t, withSecret.addr)
	require.NoError(t, waitForExecutor(t.Context(), c), "the coordinator with the secret connects")

	without := start("without", "")
	_, err = coordinatorClient(t, without.addr).RegisterExecutor(t.Context(), &coordinatorv1.RegisterExecutorRequest{Address: ex.addr})
	require.ErrorContains(t, err, "Unauthenticated")
	require.ErrorContains(t, err, "executor secret required")
}

func coordinatorClient(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &client{conn: conn, CoordinatorServiceClient: coordinatorv1.NewCoordinatorServiceClient(conn)}
}
