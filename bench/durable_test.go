//go:build linux

package bench

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	_ "github.com/mattn/go-sqlite3" // the driver the SQLite store uses
)

// The floor under every durable commit on this machine: what one bare
// flush of a small write to the disk costs, against one SQLite commit of
// one row in the mode the store runs in (WAL, synchronous=FULL). The
// difference is what SQLite adds to a flush; the store's group commit adds
// its own statements on top (see storetest's BenchmarkStore). The files go
// to $TASKER_DURABLE_DIR, default a temporary directory: give the directory
// of the store being measured, since tmpfs would make every flush free.
//
//	go test ./bench -run '^$' -bench 'Durable' -benchtime 2000x

func durableDir(b *testing.B) string {
	if dir := os.Getenv("TASKER_DURABLE_DIR"); dir != "" {
		d, err := os.MkdirTemp(dir, "tasker-durable-")
		require.NoError(b, err)
		b.Cleanup(func() { _ = os.RemoveAll(d) })
		return d
	}
	return b.TempDir()
}

// benchmarkFlush writes 4 KiB (a page, as a WAL frame is) and flushes it,
// each iteration: appended to a growing file, or over a preallocated MiB
// in turn, as a WAL reused after a checkpoint is written; an append also
// has the file's new size to make durable.
func benchmarkFlush(b *testing.B, flush func(*os.File) error) {
	for _, appending := range []bool{true, false} {
		name := "overwrite"
		if appending {
			name = "append"
		}
		b.Run(name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(durableDir(b), "flush"))
			require.NoError(b, err)
			defer func() { require.NoError(b, f.Close()) }()
			page := make([]byte, 4096)
			const span = 1 << 20
			if !appending {
				_, err := f.Write(make([]byte, span))
				require.NoError(b, err)
				require.NoError(b, f.Sync())
			}
			var off int64
			b.ResetTimer()
			for b.Loop() {
				if appending {
					_, err = f.Write(page)
				} else {
					_, err = f.WriteAt(page, off)
					off = (off + int64(len(page))) % span
				}
				if err != nil {
					b.Fatal(err)
				}
				if err := flush(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDurableFsync(b *testing.B) {
	benchmarkFlush(b, (*os.File).Sync)
}

// SQLite on Linux flushes its WAL with fdatasync, which skips metadata
// that does not affect reading the data back.
func BenchmarkDurableFdatasync(b *testing.B) {
	benchmarkFlush(b, func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) })
}

// BenchmarkDurableSQLiteCommit commits one one-row transaction per
// iteration, with the store's journal and sync settings.
func BenchmarkDurableSQLiteCommit(b *testing.B) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		b.Run("synchronous="+mode, func(b *testing.B) {
			ctx := context.Background()
			path := filepath.Join(durableDir(b), "commit.db")
			db, err := sql.Open("sqlite3", path+"?_journal_mode=WAL&_synchronous="+mode+"&_txlock=immediate")
			require.NoError(b, err)
			defer func() { require.NoError(b, db.Close()) }()
			db.SetMaxOpenConns(1)
			_, err = db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
			require.NoError(b, err)
			v := make([]byte, 200)
			b.ResetTimer()
			for b.Loop() {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO t (v) VALUES (?)`, v); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
