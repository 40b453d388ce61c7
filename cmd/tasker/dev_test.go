package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// tasker dev used to leave a tasker-dev-* directory behind on every run,
// and printed nothing while it started.
func TestDevRemovesItsTemporaryStore(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	res := runCLIEnv(t, cliEnvFor(map[string]string{"TMPDIR": tmp}), "dev", "--once", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(res.stdout, "\n")
	require.Regexp(t, `^starting a coordinator on 127\.0\.0\.1:0 with the SQLite store `+regexp.QuoteMeta(tmp)+`/tasker-dev-\d+/tasker\.db, removed on exit; give --db to keep one$`, lines[0])
	require.Equal(t, "starting an executor hosting the built-in handlers (noop, echo, sleep, flaky, decide)", lines[1])
	require.Contains(t, res.stdout, "\nwaiting for the executor to connect\nregistering the example templates\nregistered ")
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left, "the temporary store is removed on exit")

	// A store the user names is theirs to keep.
	db := filepath.Join(t.TempDir(), "mine.db")
	res = runCLIEnv(t, cliEnvFor(map[string]string{"TMPDIR": tmp}), "dev", "--once", "--listen", "127.0.0.1:0", "--http-listen", "", "--db", db)
	require.Equal(t, 0, res.code, res.stderr)
	require.True(t, strings.HasPrefix(res.stdout, "starting a coordinator on 127.0.0.1:0 with the SQLite store "+db+"\n"), res.stdout)
	require.FileExists(t, db)
	left, err = os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left)
}

// A second tasker dev on the same address stopped with only "bind: address
// already in use": the error now names the flag and what to do.
func TestDevOnATakenAddressSaysWhichFlagToChange(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	addr := taken.Addr().String()

	res := runCLIEnv(t, cliEnvFor(nil), "dev", "--once", "--listen", addr, "--http-listen", "")
	require.Equal(t, 1, res.code, res.stdout)
	require.Contains(t, res.stderr, "--listen: "+addr+" is already in use (is another tasker dev, coordinator or executor running there?): stop what holds it, or give --listen another address")

	res = runCLIEnv(t, cliEnvFor(nil), "dev", "--once", "--listen", "127.0.0.1:0", "--http-listen", addr)
	require.Equal(t, 1, res.code, res.stdout)
	require.Contains(t, res.stderr, "--http-listen: "+addr+" is already in use")

	res = runCLIEnv(t, cliEnvFor(nil), "executor", "--listen", addr, "--coordinator", "127.0.0.1:1")
	require.Equal(t, 1, res.code, res.stdout)
	require.Contains(t, res.stderr, "--listen: "+addr+" is already in use")
}
