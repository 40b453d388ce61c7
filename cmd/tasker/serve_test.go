package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// runRefused runs the CLI with a context that is already cancelled, so a
// server command that wrongly accepts its flags stops at once (and the test
// fails on its exit status) instead of serving until the test times out.
func runRefused(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var stdout, stderr bytes.Buffer
	env := cliEnvFor(nil)
	env.Stdout, env.Stderr = &stdout, &stderr
	code := run(ctx, args, env)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestServerFlagsRefusedNamingTheFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "refused.db")
	coord := func(extra ...string) []string {
		return append([]string{"coordinator", "--listen", "127.0.0.1:0", "--db", db}, extra...)
	}
	exec := func(extra ...string) []string {
		return append([]string{"executor", "--listen", "127.0.0.1:0"}, extra...)
	}
	for _, tc := range []struct {
		args []string
		want string
		// secret must not appear in the error.
		secret string
	}{
		{args: coord("--listen", "7170"), want: `--listen: want host:port (e.g. 127.0.0.1:7170), got "7170"`},
		{args: coord("--listen", "127.0.0.1:http"), want: "--listen: want host:port (e.g. 127.0.0.1:7070)"},
		{args: coord("--listen", "127.0.0.1:70000"), want: "--listen: want host:port"},
		{args: coord("--http-listen", "7180"), want: "--http-listen: want host:port (e.g. 127.0.0.1:7180)"},
		{args: coord("--db", "mysql://tasker:hunter2@db.internal/tasker"), secret: "hunter2",
			want: `--db: unsupported scheme "mysql": want a SQLite file path, sqlite:PATH, or a postgres:// or postgresql:// URL`},
		{args: coord("--db", "postgres:db.internal/tasker"), want: "--db: want postgres://"},
		{args: coord("--db", ""), want: "--db is empty"},
		{args: coord("--sync", "off"), want: `--sync: want full or normal, got "off"`},
		{args: coord("--lease-ttl", "0s"), want: "--lease-ttl: want a positive duration, got 0s"},
		{args: coord("--executor-grace", "-1s"), want: "--executor-grace: want a positive duration, got -1s"},
		{args: coord("--executor-liveness", "0s"), want: "--executor-liveness: want a positive duration, got 0s"},
		{args: coord("--shutdown-timeout", "0s"), want: "--shutdown-timeout: want a positive duration, got 0s"},
		{args: coord("--task-retention", "-1h"), want: "--task-retention: want zero (off) or a positive duration, got -1h0m0s"},
		{args: coord("--task-retention", "720h", "--event-retention", "0"), want: "--task-retention 720h0m0s needs --event-retention above 0"},
		{args: coord("--task-retention", "24h"), want: "--task-retention 24h0m0s is shorter than --event-retention 168h0m0s: a task is deleted only once its events have left the event log; give --task-retention 168h0m0s or more"},
		{args: coord("--max-context-bytes", "-1"), want: "--max-context-bytes: want a positive number, got -1"},
		{args: coord("--max-result-bytes", "0"), want: "--max-result-bytes: want a positive number, got 0"},
		{args: coord("--max-steps", "0"), want: "--max-steps: want a positive number, got 0"},
		{args: coord("--max-request-bytes", "-8"), want: "--max-request-bytes: want a positive number, got -8"},
		{args: exec("--capacity", "0"), want: "--capacity: want a positive number, got 0"},
		{args: exec("--capacity", "-3"), want: "--capacity: want a positive number, got -3"},
		{args: exec("--listen", "7071"), want: `--listen: want host:port (e.g. 127.0.0.1:7071), got "7071"`},
		{args: exec("--http-listen", "localhost"), want: "--http-listen: want host:port (e.g. 127.0.0.1:7081)"},
	} {
		res := runRefused(t, tc.args...)
		require.Equal(t, 1, res.code, "%v was accepted", tc.args)
		require.Contains(t, res.stderr, tc.want, tc.args)
		require.Equal(t, 1, strings.Count(res.stderr, "\n"), "one error line: %s", res.stderr)
		if tc.secret != "" {
			require.NotContains(t, res.stderr, tc.secret, "the password of --db is not printed")
		}
		_, err := os.Stat(db)
		require.ErrorIs(t, err, os.ErrNotExist, "%v: refused before the store was created", tc.args)
	}
}

func TestParseDB(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		db, kind, target, err string
	}{
		{db: "tasker.db", kind: "sqlite", target: "tasker.db"},
		{db: "/var/lib/tasker/tasker.db", kind: "sqlite", target: "/var/lib/tasker/tasker.db"},
		{db: "./a:b.db", kind: "sqlite", target: "./a:b.db"},
		{db: "sqlite:tasker.db", kind: "sqlite", target: "tasker.db"},
		{db: "sqlite:///abs/tasker.db", kind: "sqlite", target: "/abs/tasker.db"},
		{db: "sqlite://rel.db", kind: "sqlite", target: "rel.db"},
		{db: "postgres://u@h/db", kind: "postgres", target: "postgres://u@h/db"},
		{db: "POSTGRESQL://u@h/db", kind: "postgres", target: "POSTGRESQL://u@h/db"},
		{db: "", err: "--db is empty"},
		{db: "sqlite:", err: "--db: sqlite: needs a path"},
		{db: "mysql://u:p@h/db", err: `unsupported scheme "mysql"`},
		{db: "file:tasker.db", err: `unsupported scheme "file"`},
		{db: "postgresql:h/db", err: "--db: want postgres://HOST/DB or postgresql://HOST/DB"},
	} {
		kind, target, err := parseDB(tc.db)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.db)
			continue
		}
		require.NoError(t, err, tc.db)
		require.Equal(t, tc.kind, kind, tc.db)
		require.Equal(t, tc.target, target, tc.db)
	}
}
