package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store/sqlite"
	"github.com/tasker-go/tasker/store/storetest"
)

func TestBackupCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "tasker.db")
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: db})
	require.NoError(t, err)
	_, _, err = s.TaskCreate(t.Context(), storetest.TaskParams("ns", time.Now(), "a", "b"))
	require.NoError(t, err)
	require.NoError(t, s.Close())

	out := filepath.Join(dir, "copy.db")
	r := runCLIEnv(t, cliEnvFor(nil), "backup", "--db", "sqlite:"+db, out)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `^backed up `+regexp.QuoteMeta(db)+` to `+regexp.QuoteMeta(out)+`: \d+\.\d KiB, 1 tasks, 2 steps, no events, schema version \d+; checked in \S+\n$`, r.stdout)

	// A second backup to the same file is refused and leaves it alone.
	before, err := os.ReadFile(out)
	require.NoError(t, err)
	r = runCLIEnv(t, cliEnvFor(nil), "backup", "--db", db, out)
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, out+": the backup file already exists; name a new file")
	after, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, before, after)

	r = runCLIEnv(t, cliEnvFor(nil), "backup", "--db", db, filepath.Join(dir, "copy2.db"), "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var got backupJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, db, got.Store)
	require.EqualValues(t, 1, got.Tasks)
	require.EqualValues(t, 2, got.Steps)
	require.Empty(t, got.LastEvent) // created, not yet moved: no transition
	require.Positive(t, got.Bytes)
	require.Positive(t, got.SchemaVersion)

	r = runCLIEnv(t, cliEnvFor(nil), "backup", "--db", "postgres://u@h/db", filepath.Join(dir, "pg.db"))
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "pg_dump")
	require.NoFileExists(t, filepath.Join(dir, "pg.db"))

	r = runCLIEnv(t, cliEnvFor(nil), "backup", "--db", filepath.Join(dir, "missing.db"), filepath.Join(dir, "x.db"))
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "there is no store at "+filepath.Join(dir, "missing.db"))
	require.NoFileExists(t, filepath.Join(dir, "missing.db"))

	r = runCLIEnv(t, cliEnvFor(nil), "backup")
	require.Equal(t, exitUsage, r.code)
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 264 << 20: "264.0 MiB", 3 << 30: "3.0 GiB"} {
		require.Equal(t, want, formatBytes(n), n)
	}
}
