package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/auth/authtest"
)

func TestBenchAgainstRunningCoordinator(t *testing.T) {
	t.Parallel()
	rc, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0", httpListen: "127.0.0.1:0",
		store: storeFlags{db: filepath.Join(t.TempDir(), "tasker.db"), sync: "normal"},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.stop()) })

	res := runCLI(t, rc.addr, "bench", "--shape", "fanout", "--fanout", "5", "--tasks", "6", "--concurrency", "3",
		"--coordinator-metrics", "http://"+rc.httpAddr+"/metrics", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got), res.stdout)
	require.Equal(t, "fanout", got["shape"])
	require.Equal(t, 6.0, got["tasks"])
	require.Equal(t, 42.0, got["steps"], "1 + 5 + 1 steps per task")
	require.Equal(t, 0.0, got["duplicate_dispatches"])
	require.NotNil(t, got["mean_batch_size"], "read from --coordinator-metrics")
	require.NotNil(t, got["cpu_seconds_per_1k_steps"], "from process_cpu_seconds_total")
	require.Equal(t, true, got["executors_in_process"], "with --coordinator the executors run inside bench")
	byProcess, ok := got["cpu_seconds_per_1k_steps_by_process"].(map[string]any)
	require.True(t, ok, res.stdout)
	require.Equal(t, got["cpu_seconds_per_1k_steps"], byProcess["coordinator"])
	require.Nil(t, byProcess["executors"])
	require.NotNil(t, byProcess["load_generator"])
	require.NotContains(t, got, "sync", "bench cannot know a running coordinator's sync mode")

	res = runCLI(t, rc.addr, "bench", "--shape", "tree", "--tasks", "3", "--completions", "watch")
	require.Equal(t, 0, res.code, res.stderr)
	require.True(t, strings.HasPrefix(res.stdout, "bench: shape=tree tasks=3 failed=0 steps=24 "), res.stdout)
	require.Equal(t, 1, strings.Count(res.stdout, "\n"))
	require.Contains(t, res.stdout, " commits/s=- ", "no metrics without --coordinator-metrics")
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--coordinator", "127.0.0.1:9", "--db", "x.db"}, "--db, --sync, --coordinators and --keep-db configure the coordinators bench starts"},
		{[]string{"bench", "--coordinator", "127.0.0.1:9", "--coordinators", "2"}, "cannot be used with --coordinator"},
		{[]string{"bench", "--coordinators", "2"}, "--coordinators 2 needs a postgres:// --db"},
		{[]string{"bench", "--db", "x.db", "--coordinators", "3"}, "a SQLite file serves one coordinator"},
		{[]string{"bench", "--coordinators", "0"}, "--coordinators must be at least 1"},
		{[]string{"bench", "--db", "postgres://127.0.0.1:9/x", "--sync", "normal"}, "--sync is a SQLite setting"},
		{[]string{"bench", "--coordinator-metrics", "http://127.0.0.1:9/metrics"}, "--coordinator-metrics needs --coordinator"},
		{[]string{"bench", "--sync", "off"}, "--sync must be full or normal"},
		{[]string{"bench", "--token", "t"}, "--token needs --coordinator: the coordinators bench starts itself serve plaintext on loopback without tokens"},
		{[]string{"--tls-ca", "ca.pem", "bench"}, "--tls-ca needs --coordinator"},
		{[]string{"bench", "--executor-token", "t"}, "--executor-token needs --coordinator"},
		{[]string{"bench", "-o", "yaml"}, "unknown output format"},
		{[]string{"bench", "--coordinator", "127.0.0.1:9", "--shape", "spiral"}, `unknown shape "spiral"`},
		{[]string{"bench", "--coordinator", "127.0.0.1:9", "--tasks", "0"}, "give a number of tasks or a duration"},
		{[]string{"bench", "--coordinator", "127.0.0.1:9", "--completions", "poll"}, `--completions must be events or watch, got "poll"`},
		{[]string{"bench", "--coordinator", "127.0.0.1:9", "--executors-in-process"}, "--executors-in-process cannot be used with --coordinator"},
		{[]string{"bench", "executor", "--coordinator-addrs", "127.0.0.1:9"}, "an executor process needs an id"},
	} {
		res := runCLIEnv(t, cliEnvFor(nil), tc.args...)
		require.Equal(t, 1, res.code, tc.args)
		require.Contains(t, res.stderr, tc.want, tc.args)
	}
}

// TestBenchUsesTLSAndTokenFlags runs bench against a coordinator that
// serves mutual TLS and needs tokens: bench's client must use the global
// --tls-* flags and --token, and the executors it hosts must serve TLS with
// the same certificate and register with --executor-token.
func TestBenchUsesTLSAndTokenFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := authtest.NewCA(t, "mesh")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	coordCert, coordKey := ca.Issue(t, "coordinator").WriteFiles(t, dir, "coordinator")
	benchCert, benchKey := ca.Issue(t, "bench").WriteFiles(t, dir, "bench")
	rc, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0", log: discardLog(),
		store: storeFlags{db: filepath.Join(dir, "tasker.db"), sync: "normal"},
		security: coordinatorSecurityFlags{
			files: tlsFiles{ca: caFile, cert: coordCert, key: coordKey}, tokensFile: writeTokens(t, dir),
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.stop()) })

	tlsArgs := []string{"--tls-ca", caFile, "--tls-cert", benchCert, "--tls-key", benchKey}
	res := runCLI(t, rc.addr, append(tlsArgs, "bench", "--shape", "linear4", "--tasks", "3", "--concurrency", "2",
		"--token", writerToken, "--executor-token", executorToken, "-o", "json")...)
	require.Equal(t, 0, res.code, res.stderr)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got), res.stdout)
	require.Equal(t, 3.0, got["tasks"])
	require.Equal(t, 0.0, got["tasks_failed"])
	require.Equal(t, 12.0, got["steps"])

	// The API token is checked too: a read token cannot create tasks.
	res = runCLI(t, rc.addr, append(tlsArgs, "bench", "--tasks", "1", "--token", readerToken, "--executor-token", executorToken)...)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "needs write access")
}
