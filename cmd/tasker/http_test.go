package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/auth/authtest"
)

// Tokens of the HTTP tests, one per access class.
const (
	readerToken   = "reader-token-0123456789"
	writerToken   = "writer-token-0123456789"
	executorToken = "executor-token-0123456789"
)

func writeTokens(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "tokens.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
- {name: reader, token: `+readerToken+`, namespaces: [demo], access: read}
- {name: writer, token: `+writerToken+`, namespaces: ["*"], access: write}
- {name: executors, token: `+executorToken+`, access: executor}
`), 0o600))
	return path
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// httpGet fetches url with an optional bearer token and returns the status
// and body.
func httpGet(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestCoordinatorHTTPRefusesPlaintextOffLoopback(t *testing.T) {
	t.Parallel()
	opts := coordinatorOptions{
		listen: "127.0.0.1:0", httpListen: "0.0.0.0:0", log: discardLog(),
		store: storeFlags{db: filepath.Join(t.TempDir(), "tasker.db"), sync: "normal"},
	}
	rc, err := startCoordinator(t.Context(), opts)
	if err == nil {
		require.NoError(t, rc.stop())
	}
	require.ErrorContains(t, err, `--http-listen: refusing to serve plaintext HTTP on a non-loopback address "0.0.0.0:0"`)
	require.ErrorContains(t, err, "give --tls-cert and --tls-key to serve HTTPS, or --insecure to serve plaintext anyway")

	opts.security.allowPlaintext = true
	rc, err = startCoordinator(t.Context(), opts)
	require.NoError(t, err, "--insecure allows it")
	require.NoError(t, rc.stop())
}

func TestCoordinatorHTTPNeedsReadToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rc, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0", httpListen: "127.0.0.1:0", pprof: true, log: discardLog(),
		store:    storeFlags{db: filepath.Join(dir, "tasker.db"), sync: "normal"},
		security: coordinatorSecurityFlags{tokensFile: writeTokens(t, dir)},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.stop()) })
	base := "http://" + rc.httpAddr
	c := &http.Client{}

	code, body := httpGet(t, c, base+"/healthz", "")
	require.Equal(t, http.StatusOK, code, "health checks need no token")
	require.Equal(t, "ok\n", body)
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		code, body = httpGet(t, c, base+path, "")
		require.Equal(t, http.StatusUnauthorized, code, path)
		require.Contains(t, body, "no bearer token", path)
	}
	// The dashboard's page is public (it holds no data and asks for a token
	// itself); a client route gets the same page.
	code, body = httpGet(t, c, base+"/nowhere", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "<div id=\"root\">")
	code, _ = httpGet(t, c, base+"/metrics", "not-a-token-anyone-issued")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body = httpGet(t, c, base+"/metrics", executorToken)
	require.Equal(t, http.StatusForbidden, code, "an executor token is not a read token")
	require.Contains(t, body, "needs read access")
	for _, tok := range []string{readerToken, writerToken} {
		code, body = httpGet(t, c, base+"/metrics", tok)
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, "tasker_store_commits_total")
	}
	code, _ = httpGet(t, c, base+"/debug/pprof/", readerToken)
	require.Equal(t, http.StatusOK, code)
}

func TestCoordinatorHTTPServesTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := authtest.NewCA(t, "ca")
	cert, key := ca.Issue(t, "coordinator").WriteFiles(t, dir, "coordinator")
	rc, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0", httpListen: "127.0.0.1:0", log: discardLog(),
		store:    storeFlags{db: filepath.Join(dir, "tasker.db"), sync: "normal"},
		security: coordinatorSecurityFlags{files: tlsFiles{cert: cert, key: key}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.stop()) })

	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: auth.ClientTLS(ca.Pool(), nil)}}
	code, body := httpGet(t, tlsClient, "https://"+rc.httpAddr+"/metrics", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "tasker_store_commits_total")
	code, _ = httpGet(t, &http.Client{}, "http://"+rc.httpAddr+"/metrics", "")
	require.Equal(t, http.StatusBadRequest, code, "plain HTTP to the TLS port is refused")
	require.Equal(t, uint16(tls.VersionTLS12), auth.ClientTLS(nil, nil).MinVersion)
}

func TestExecutorHTTPFollowsTheSameRules(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(opts executorOptions) (string, error) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		opts.listen, opts.log, opts.capacity = "127.0.0.1:0", discardLog(), 1
		re, err := runExecutor(ctx, opts)
		if err != nil {
			cancel()
			return "", err
		}
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-re.done)
		})
		return re.httpAddr, nil
	}

	_, err := start(executorOptions{httpListen: "0.0.0.0:0"})
	require.ErrorContains(t, err, `--http-listen: refusing to serve plaintext HTTP on a non-loopback address "0.0.0.0:0"`)
	_, err = start(executorOptions{httpListen: "0.0.0.0:0", allowPlaintext: true})
	require.NoError(t, err, "--insecure allows it")

	addr, err := start(executorOptions{httpListen: "127.0.0.1:0", tokensFile: writeTokens(t, dir)})
	require.NoError(t, err)
	c := &http.Client{}
	code, _ := httpGet(t, c, "http://"+addr+"/healthz", "")
	require.Equal(t, http.StatusOK, code)
	code, _ = httpGet(t, c, "http://"+addr+"/metrics", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body := httpGet(t, c, "http://"+addr+"/metrics", readerToken)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "tasker_executor_capacity 1")

	ca := authtest.NewCA(t, "ca")
	cert, key := ca.Issue(t, "executor").WriteFiles(t, dir, "executor")
	addr, err = start(executorOptions{httpListen: "127.0.0.1:0", tls: tlsFiles{cert: cert, key: key}})
	require.NoError(t, err)
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: auth.ClientTLS(ca.Pool(), nil)}}
	code, _ = httpGet(t, tlsClient, "https://"+addr+"/metrics", "")
	require.Equal(t, http.StatusOK, code)
}
