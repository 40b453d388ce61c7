package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/auth/authtest"
	"github.com/tasker-go/tasker/conformance"
)

// startConformanceExecutor runs `tasker executor --conformance` in-process
// until the test ends.
func startConformanceExecutor(t *testing.T, conformanceHandlers bool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	_, addr, done, err := startExecutor(ctx, executorOptions{
		listen: "127.0.0.1:0", capacity: 2, log: discardLog(), conformance: conformanceHandlers,
	})
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return addr
}

func TestExecutorCheckPassesTheGoExecutor(t *testing.T) {
	t.Parallel()
	addr := startConformanceExecutor(t, true)
	// The cases that need no waiting for a heartbeat interval or a process.
	res := runCLI(t, "127.0.0.1:9", "executor-check", addr, "--handler", "noop,echo", "--case", "echo,failure,capacity,cancel")
	require.Equal(t, exitOK, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	require.Len(t, lines, 6, res.stdout)
	for i, id := range []string{"describe", "echo", "failure", "capacity", "cancel"} {
		require.Regexp(t, `^PASS  `+id+` .*; sent: .*; got: .*\[docs/executor-protocol.md#[a-z-]+, \d`, lines[i])
	}
	require.Regexp(t, `^executor 127\.0\.0\.1:\d+ \(go, executor_id [0-9a-f-]+\): 5 passed, 0 failed, 0 skipped in `, lines[5])
}

func TestExecutorCheckFailsWithoutConformanceHandlers(t *testing.T) {
	t.Parallel()
	addr := startConformanceExecutor(t, false)
	res := runCLI(t, "127.0.0.1:9", "executor-check", addr, "-o", "json", "--case", "echo")
	require.Equal(t, exitFailed, res.code, res.stderr)
	require.Empty(t, res.stderr)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	require.Len(t, lines, 3, res.stdout)
	var describe, echo struct {
		Type     string   `json:"type"`
		ID       string   `json:"id"`
		Status   string   `json:"status"`
		Rule     string   `json:"rule"`
		Problems []string `json:"problems"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &describe))
	require.Equal(t, "case", describe.Type)
	require.Equal(t, "describe", describe.ID)
	require.Equal(t, "fail", describe.Status)
	require.Contains(t, describe.Problems[0], "handlers does not list conformance.echo, conformance.fail, conformance.sleep")
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &echo))
	require.Equal(t, "fail", echo.Status)
	require.Contains(t, echo.Problems[0], `UnknownHandler`)
	var sum checkSummaryJSON
	require.NoError(t, json.Unmarshal([]byte(lines[2]), &sum))
	require.Equal(t, checkSummaryJSON{Type: "summary", Address: addr, ExecutorID: sum.ExecutorID, Language: "go", Failed: 2, DurationMS: sum.DurationMS}, sum)
}

func TestExecutorCheckRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{args: []string{"executor-check"}, code: exitUsage, want: "accepts 1 arg(s), received 0"},
		{args: []string{"executor-check", "7071"}, code: exitFailed, want: `ADDR: want host:port (e.g. 127.0.0.1:7071), got "7071"`},
		{args: []string{"executor-check", "127.0.0.1:7071", "--case", "nope"}, code: exitFailed, want: `unknown case "nope" (cases: ` + strings.Join(conformance.CaseIDs(), ", ")},
		{args: []string{"executor-check", "127.0.0.1:7071", "--case-timeout", "0s"}, code: exitFailed, want: "--case-timeout: want a positive duration, got 0s"},
		{args: []string{"executor-check", "127.0.0.1:7071", "--executor-secret", "short"}, code: exitFailed, want: "--executor-secret: 5 characters"},
		{args: []string{"executor-check", "127.0.0.1:7071", "-o", "yaml"}, code: exitFailed, want: `unknown output format "yaml"`},
	} {
		res := runCLI(t, "127.0.0.1:9", tc.args...)
		require.Equal(t, tc.code, res.code, "%v: %s", tc.args, res.stderr)
		require.Contains(t, res.stderr, tc.want, fmt.Sprint(tc.args))
	}
}

func TestExecutorCheckOverMutualTLSWithASecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := authtest.NewCA(t, "ca")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	cert, key := ca.Issue(t, "executor").WriteFiles(t, dir, "executor")
	re, err := serveExecutor(t, executorOptions{tls: tlsFiles{ca: caFile, cert: cert, key: key}, secret: testExecutorSecret, conformance: true})
	require.NoError(t, err)
	checkCert, checkKey := ca.Issue(t, "coordinator").WriteFiles(t, dir, "coordinator")
	args := []string{"executor-check", re.addr, "--case", "echo", "--tls-ca", caFile, "--tls-cert", checkCert, "--tls-key", checkKey}

	res := runCLIEnv(t, cliEnvFor(map[string]string{envExecutorSecret: testExecutorSecret}), args...)
	require.Equal(t, exitOK, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	require.Contains(t, res.stdout, "2 passed, 0 failed")

	res = runCLIEnv(t, cliEnvFor(nil), args...)
	require.Equal(t, exitFailed, res.code, res.stdout)
	require.Contains(t, res.stdout, "Describe failed: Unauthenticated")
}
