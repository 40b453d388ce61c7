package deploy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/auth/authtest"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// liveWait bounds each wait for a process to come up or to be seen by
// another; generous, since it only limits how long a broken setup hangs.
const liveWait = 60 * time.Second

type liveBins struct{ tasker, probe string }

// testLive runs the compose file's coordinator and executor and the
// Kubernetes coordinator as the files start them (on loopback, SQLite and a
// free port instead of the network and PostgreSQL), and probes them the way
// the files do.
func testLive(t *testing.T, bins liveBins, f facts) {
	require.NotNil(t, f.compose.coordinator, "compose.yaml has no coordinator to run")
	require.NotNil(t, f.compose.executor, "compose.yaml has no executor to run")
	require.NotNil(t, f.k8sCoordinator, "kubernetes/ has no coordinator to run")
	require.NotEmpty(t, bins.probe, "the Dockerfile builds no ./deploy/healthprobe")

	t.Run("compose", func(t *testing.T) {
		t.Parallel()
		tmp := t.TempDir()
		tokens := filepath.Join(tmp, "tokens.yaml")
		require.NoError(t, os.WriteFile(tokens, []byte(f.compose.tokens), 0o600))
		coord := startTasker(t, bins.tasker, nil, f.compose.coordinator.withArgs(map[string]string{
			"listen": "127.0.0.1:0", "http-listen": "127.0.0.1:0", "db": filepath.Join(tmp, "tasker.db"),
			"tokens-file": tokens, "log-format": "json",
		}))
		addrs := coord.waitFor(t, "coordinator serving", "http serving")
		grpcAddr, httpAddr := addrs["coordinator serving"], addrs["http serving"]
		checkHTTP(t, plainHTTP(httpAddr, f.compose.apiToken), f.httpPaths, "tasker_store_commits_total")
		checkHealth(t, grpcAddr)
		runProbe(t, bins.probe, grpcAddr, 0)

		ex := startTasker(t, bins.tasker, []string{"TASKER_TOKEN=" + f.compose.executorToken}, f.compose.executor.withArgs(map[string]string{
			"listen": "127.0.0.1:0", "advertise": "", "coordinator": grpcAddr, "coordinators": "",
			"http-listen": "127.0.0.1:0", "log-format": "json",
		}))
		exAddrs := ex.waitFor(t, "executor serving", "http serving")
		checkHTTP(t, plainHTTP(exAddrs["http serving"], ""), f.httpPaths, "go_goroutines")
		checkHealth(t, exAddrs["executor serving"])
		runProbe(t, bins.probe, exAddrs["executor serving"], 0)

		// The executor got in with its compose token, so the tokens config
		// and TASKER_TOKEN agree; an operator's write token lists it.
		waitExecutorListed(t, bins.tasker, grpcAddr, f.compose.apiToken, exAddrs["executor serving"])
	})

	t.Run("kubernetes coordinator", func(t *testing.T) {
		t.Parallel()
		tmp := t.TempDir()
		tokens := filepath.Join(tmp, "tokens.yaml")
		// The ConfigMap's entries are placeholders that match no token;
		// the test adds the read token a scraper would hold.
		const scrapeToken = "prometheus-token-0123456789"
		scrape := fmt.Sprintf("\n- {name: scrape-test, token: %q, namespaces: [\"*\"], access: read}\n", scrapeToken)
		require.NoError(t, os.WriteFile(tokens, []byte(f.k8sTokens+scrape), 0o600))
		coord := startTasker(t, bins.tasker, nil, f.k8sCoordinator.withArgs(map[string]string{
			"listen": "127.0.0.1:0", "http-listen": "127.0.0.1:0", "db": filepath.Join(tmp, "tasker.db"),
			"id": "k8s-live", "tokens-file": tokens, "log-format": "json",
		}))
		addrs := coord.waitFor(t, "coordinator serving", "http serving")
		checkHTTP(t, plainHTTP(addrs["http serving"], scrapeToken), f.httpPaths, "tasker_store_commits_total")
		checkHealth(t, addrs["coordinator serving"])

		// The ConfigMap's tokens file is in force: a call without a token
		// is refused, while health checks (the probes) need none.
		conn, err := grpc.NewClient(addrs["coordinator serving"], grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer func() { _ = conn.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), liveWait)
		defer cancel()
		_, err = coordinatorv1.NewCoordinatorServiceClient(conn).ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
		require.Equal(t, codes.Unauthenticated, status.Code(err), "ListExecutors without a token: %v", err)
	})

	t.Run("systemd units with TLS", func(t *testing.T) {
		t.Parallel()
		testSystemdLive(t, bins, f.systemd, f.httpPaths)
	})

	t.Run("probe fails on a closed port", func(t *testing.T) {
		t.Parallel()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := lis.Addr().String()
		require.NoError(t, lis.Close())
		runProbe(t, bins.probe, addr, 1)
	})
}

// testSystemdLive runs the units' command lines with throwaway
// certificates and tokens where LoadCredential= would put them (%d) and the
// state directory (%S) in a temporary one: mutual TLS between coordinator
// and executor, tokens, and the probe over TLS.
func testSystemdLive(t *testing.T, bins liveBins, units systemdFacts, httpPaths []string) {
	require.NotNil(t, units.coordinator, "systemd/ has no coordinator unit")
	require.NotNil(t, units.executor, "systemd/ has no executor unit")
	tmp := t.TempDir()
	creds, state := filepath.Join(tmp, "credentials"), filepath.Join(tmp, "state")
	require.NoError(t, os.Mkdir(creds, 0o700))
	ca := authtest.NewCA(t, "tasker-deploy-test")
	leaf := ca.Issue(t, "tasker")
	caFile := ca.WriteFile(t, tmp, "ca.pem")
	certFile, keyFile := leaf.WriteFiles(t, tmp, "client")
	const executorToken, apiToken = "executor-token-0123456789", "operator-token-0123456789"
	tokens := fmt.Sprintf("- {name: executors, token: %q, access: executor}\n- {name: ops, token: %q, namespaces: [\"*\"], access: write}\n", executorToken, apiToken)
	files := map[string][]byte{"tls-cert": leaf.CertPEM, "tls-key": leaf.KeyPEM, "tls-ca": ca.PEM, "tokens-file": []byte(tokens)}
	expand := func(inv *invocation, replace map[string]string) []string {
		for flag, data := range files {
			if name, ok := strings.CutPrefix(inv.get(flag), "%d/"); ok {
				require.NoError(t, os.WriteFile(filepath.Join(creds, name), data, 0o600))
			}
		}
		args := inv.withArgs(replace)
		for i, a := range args {
			args[i] = strings.NewReplacer("%d", creds, "%S", state).Replace(a)
		}
		return args
	}

	coordArgs := expand(units.coordinator, map[string]string{"listen": "127.0.0.1:0", "http-listen": "127.0.0.1:0", "log-format": "json"})
	db := strings.NewReplacer("%S", state).Replace(units.coordinator.get("db"))
	require.NoError(t, os.MkdirAll(filepath.Dir(db), 0o700), "StateDirectory")
	coord := startTasker(t, bins.tasker, nil, coordArgs)
	addrs := coord.waitFor(t, "coordinator serving", "http serving")
	grpcAddr := addrs["coordinator serving"]
	// The units serve --http-listen over TLS too, with the same certificate.
	tlsClient := &http.Client{Timeout: liveWait, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}}}
	checkHTTP(t, httpTarget{base: "https://" + addrs["http serving"], client: tlsClient, token: apiToken}, httpPaths, "tasker_store_commits_total")
	tlsArgs := []string{"-tls-ca=" + caFile, "-tls-cert=" + certFile, "-tls-key=" + keyFile}
	runProbe(t, bins.probe, grpcAddr, 0, tlsArgs...)
	runProbe(t, bins.probe, grpcAddr, 1) // plaintext: the unit serves TLS only

	exArgs := expand(units.executor, map[string]string{"listen": "127.0.0.1:0", "advertise": "", "http-listen": "127.0.0.1:0", "log-format": "json"})
	ex := startTasker(t, bins.tasker, []string{"TASKER_COORDINATOR=" + grpcAddr, "TASKER_TOKEN=" + executorToken}, exArgs)
	exAddrs := ex.waitFor(t, "executor serving", "http serving")
	runProbe(t, bins.probe, exAddrs["executor serving"], 0, tlsArgs...)
	checkHTTP(t, httpTarget{base: "https://" + exAddrs["http serving"], client: tlsClient}, httpPaths, "go_goroutines")
	waitExecutorListed(t, bins.tasker, grpcAddr, apiToken, exAddrs["executor serving"], "--tls-ca", caFile)
}

// process is a tasker server started by the test, with its JSON log lines.
type process struct {
	cmd     *exec.Cmd
	records chan map[string]any
	// mu guards log, the stderr text kept for failure messages.
	mu  sync.Mutex
	log strings.Builder
}

// startTasker runs tasker with args and an environment free of the
// caller's TASKER_* and OTEL_* variables; it is stopped with SIGTERM when
// the test ends.
func startTasker(t *testing.T, bin string, env []string, args []string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKER_") && !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start(), "tasker %s", strings.Join(args, " "))
	p := &process{cmd: cmd, records: make(chan map[string]any, 1024)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(p.records)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				select {
				case p.records <- rec:
				default: // nobody waits for it any more
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { <-read; done <- cmd.Wait() }()
		select {
		case err := <-done:
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Errorf("tasker %s: %v", args[0], err)
			}
		case <-time.After(liveWait):
			_ = cmd.Process.Kill()
			t.Errorf("tasker %s did not stop on SIGTERM:\n%s", args[0], p.text())
		}
	})
	return p
}

func (p *process) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitFor reads log records until each message has been logged with an
// "addr" attribute, and returns the addresses by message.
func (p *process) waitFor(t *testing.T, msgs ...string) map[string]string {
	t.Helper()
	found := map[string]string{}
	deadline := time.After(liveWait)
	for len(found) < len(msgs) {
		select {
		case rec, ok := <-p.records:
			if !ok {
				t.Fatalf("tasker exited before logging %v:\n%s", msgs, p.text())
			}
			msg, _ := rec["msg"].(string)
			addr, _ := rec["addr"].(string)
			if slices.Contains(msgs, msg) && addr != "" {
				found[msg] = addr
			}
		case <-deadline:
			t.Fatalf("tasker logged no %v within %s:\n%s", msgs, liveWait, p.text())
		}
	}
	return found
}

// httpTarget is an --http-listen endpoint as a scraper reaches it.
type httpTarget struct {
	// base is scheme://host:port.
	base   string
	client *http.Client
	// token, when set, is a token with read access that /metrics needs
	// (tokens are on); without it, /metrics must be open.
	token string
}

func plainHTTP(addr, token string) httpTarget {
	return httpTarget{base: "http://" + addr, client: &http.Client{Timeout: liveWait}, token: token}
}

// checkHTTP GETs every path the files probe, plus /healthz and /metrics,
// and wants 200; the metrics must hold want. With a token, /metrics is
// refused without it (401), as every path but /healthz is when tokens are
// on, and served with it.
func checkHTTP(t *testing.T, target httpTarget, paths []string, want string) {
	t.Helper()
	get := func(path, token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, target.base+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := target.client.Do(req)
		require.NoError(t, err, "GET %s", path)
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	for _, path := range slices.Compact(slices.Sorted(slices.Values(append([]string{"/healthz", "/metrics"}, paths...)))) {
		token := ""
		if path != "/healthz" && target.token != "" {
			code, body := get(path, "")
			require.Equal(t, http.StatusUnauthorized, code, "GET %s without a token: %s", path, body)
			token = target.token
		}
		code, body := get(path, token)
		require.Equal(t, http.StatusOK, code, "GET %s: %s", path, body)
		if path == "/metrics" {
			require.Contains(t, body, want, "GET /metrics")
		}
	}
}

// checkHealth asks grpc.health.v1 as the kubelet's gRPC probe does, again
// until it answers SERVING as the probe's retries would: an executor is
// ready only once a coordinator has taken it up.
func checkHealth(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), liveWait)
	defer cancel()
	var last healthpb.HealthCheckResponse_ServingStatus
	for {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		require.NoError(t, err, "grpc.health.v1 Check on %s (last status %s)", addr, last)
		if last = resp.GetStatus(); last == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("grpc.health.v1 on %s: %s, never SERVING", addr, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runProbe runs the image's healthcheck binary against addr and wants its
// exit status.
func runProbe(t *testing.T, probe, addr string, want int, extra ...string) {
	t.Helper()
	probeOnce := func() (int, string, error) {
		out, err := exec.Command(probe, append([]string{"-addr=" + addr}, extra...)...).CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), string(out), nil
		}
		return 0, string(out), err
	}
	if want != 0 {
		// A refusal is wanted at once.
		code, out, err := probeOnce()
		require.NoError(t, err)
		require.Equal(t, want, code, "tasker-healthprobe -addr=%s: %s", addr, out)
		return
	}
	// A healthy answer may take a moment (an executor is SERVING once a
	// coordinator has taken it up), as a healthcheck's retries allow.
	healthy := func() bool {
		code, out, err := probeOnce()
		return err == nil && code == 0 && strings.Contains(out, "SERVING")
	}
	if !assert.Eventually(t, healthy, liveWait, 50*time.Millisecond) {
		code, out, err := probeOnce()
		t.Fatalf("tasker-healthprobe -addr=%s never healthy; now exit %d, %v: %s", addr, code, err, out)
	}
}

// waitExecutorListed polls `tasker executors -o json` until the executor at
// addr shows as connected.
func waitExecutorListed(t *testing.T, bin, coordinator, token, addr string, extra ...string) {
	t.Helper()
	deadline := time.Now().Add(liveWait)
	var last string
	for time.Now().Before(deadline) {
		cmd := exec.Command(bin, append([]string{"executors", "-o", "json", "--coordinator", coordinator}, extra...)...)
		cmd.Env = append(os.Environ(), "TASKER_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		last = string(out)
		require.NoError(t, err, "tasker executors: %s", out)
		for _, line := range strings.Split(strings.TrimSpace(last), "\n") {
			var e struct {
				Address   string `json:"address"`
				Connected bool   `json:"connected"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Address == addr && e.Connected {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("executor %s never listed as connected; last `tasker executors`:\n%s", addr, last)
}
