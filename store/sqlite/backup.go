package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/tasker-go/tasker/store"
)

// BackupInfo describes a backup Backup wrote.
type BackupInfo struct {
	// Path is the backup file.
	Path string
	// Bytes is its size.
	Bytes int64
	// SchemaVersion is the last migration applied to the copied store.
	SchemaVersion int64
	// Tasks and Steps count the copy's tasks and steps.
	Tasks, Steps int64
	// LastEvent is the cursor of the newest event in the copy ("" if
	// none): the copy holds exactly the writes committed up to it.
	LastEvent string
	// Took is how long the copy and its check took.
	Took time.Duration
}

// ErrBackupExists is returned by Backup when its destination exists: a
// backup never overwrites a file.
var ErrBackupExists = errors.New("the backup file already exists")

// Backup writes a consistent copy of the store at src to the new file dst,
// while coordinators go on using src. The copy is made in one read
// transaction (VACUUM INTO), so it holds every write committed before it
// began and none after, whatever the committer does meanwhile; and, as
// a read, it never blocks the store's writer. It is written next to dst
// under a temporary name, checked (PRAGMA integrity_check), flushed to
// disk and only then given the name dst, so dst is either a whole,
// checked copy or absent. src is opened read-only, so its file is never
// created or changed (SQLite leaves an empty -wal and -shm beside a
// stopped store, as for any reader); a src that does not exist, or is not
// a tasker store, is an error. A coordinator started on the copy (with
// --db dst) resumes from it: see the README's "Backup and restore".
func Backup(ctx context.Context, src, dst string) (*BackupInfo, error) {
	began := time.Now()
	if src == "" || dst == "" {
		return nil, errors.New("backup: both the store and the backup file must be named")
	}
	if strings.ContainsRune(src, '?') {
		return nil, fmt.Errorf("backup: store path %q may not contain '?'", src)
	}
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: there is no store at %s: %w", src, fs.ErrNotExist)
	} else if err != nil {
		return nil, fmt.Errorf("backup: store %s: %w", src, err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return nil, fmt.Errorf("backup: %s: %w; name a new file", dst, ErrBackupExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: %s: %w", dst, err)
	}
	// dst does not exist, so it is not src (which does): a backup cannot
	// overwrite the store it copies.
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("backup: create a file next to %s: %w", dst, err)
	}
	tmpPath := tmp.Name()
	// VACUUM INTO writes only into a file that is new or empty; the
	// temporary one is created (and kept) so that its name is ours alone.
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	// Once linked to dst, the temporary name goes too.
	defer func() { _ = os.Remove(tmpPath) }()

	db := openReadOnly(src)
	version, err := schemaVersion(ctx, db)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("backup: %s is not a tasker store: %w", src, err)
	}
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, tmpPath); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("backup: copy %s: %w", src, err)
	}
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("backup: close %s: %w", src, err)
	}

	if err := markRestorePoint(ctx, tmpPath, began); err != nil {
		return nil, fmt.Errorf("backup: mark the copy's restore point: %w", err)
	}
	info, err := checkCopy(ctx, tmpPath)
	if err != nil {
		return nil, fmt.Errorf("backup: the copy of %s failed its check: %w", src, err)
	}
	if info.SchemaVersion != version {
		return nil, fmt.Errorf("backup: the copy's schema version is %d, the store's %d", info.SchemaVersion, version)
	}
	if err := syncFile(tmpPath); err != nil {
		return nil, fmt.Errorf("backup: flush the copy: %w", err)
	}
	// Link rather than rename: a rename would replace a dst created since
	// the check above, and a backup never overwrites.
	if err := os.Link(tmpPath, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("backup: %s: %w; name a new file", dst, ErrBackupExists)
		}
		return nil, fmt.Errorf("backup: name the copy %s: %w", dst, err)
	}
	if err := syncFile(dir); err != nil {
		return nil, fmt.Errorf("backup: flush directory %s: %w", dir, err)
	}
	st, err := os.Stat(dst)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	info.Path, info.Bytes, info.Took = dst, st.Size(), time.Since(began)
	return info, nil
}

// restoreGap is how far above the backup's last event a store restored
// from it numbers its new events: more than the original can write after
// the backup and before a restore (2^40 events: a year at 35,000 events a
// second), and, added at each restore, room for millions of restores
// within a cursor's int64 and within the integers a JSON number holds
// exactly (2^53).
const restoreGap = 1 << 40

// restorePoint is one row of event_restores (migration 00024): cursors in
// (RestoredAfter, SeqBase) were handed out by the store a backup was taken
// from, for events a restore from it undid.
type restorePoint struct {
	RestoredAfter int64 `db:"restored_after"`
	SeqBase       int64 `db:"seq_base"`
}

// markRestorePoint records in the copy at path, the fresh output of
// VACUUM INTO, the restore point a store started from it begins with: its
// last cursor, and a seq base restoreGap above it. A copy of a store whose
// schema predates restore points is left as it is.
func markRestorePoint(ctx context.Context, path string, at time.Time) error {
	db := openFile(path, "rw")
	defer func() { _ = db.Close() }()
	var n int
	if err := db.GetContext(ctx, &n, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'event_restores'`); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	// The last cursor the copy may have handed out: its newest event's,
	// or, with none since an earlier restore, that restore's base.
	_, err := db.ExecContext(ctx, `INSERT INTO event_restores (restored_after, seq_base, backed_up_at)
		SELECT last, last + ?, ? FROM (SELECT max(
			COALESCE((SELECT max(seq) FROM transitions), 0),
			COALESCE((SELECT max(seq_base) FROM event_restores), 0)) AS last)`, restoreGap, at.UnixNano())
	return err
}

// seqBase is the least seq new transitions may follow (see restoreGap).
func (s *Store) seqBase() int64 {
	if len(s.restores) == 0 {
		return 0
	}
	return s.restores[len(s.restores)-1].SeqBase
}

// checkRestored refuses cursor (seq after) if a restore undid the events
// it was handed out for.
func (s *Store) checkRestored(cursor string, after int64) error {
	for _, r := range s.restores {
		if after > r.RestoredAfter && after < r.SeqBase {
			return &store.CursorRestoredError{Cursor: cursor, Resume: formatCursor(r.RestoredAfter)}
		}
	}
	return nil
}

// openReadOnly opens path read-only (mode=ro): never created, never
// written, not even checkpointed when the connection closes.
func openReadOnly(path string) *sqlx.DB { return openFile(path, "ro") }

// openFile opens path as a file: URI on one connection, in the given
// mode ("ro", or "rw" for a file that must exist), outside any Store.
func openFile(path, mode string) *sqlx.DB {
	q := url.Values{}
	q.Set("mode", mode)
	q.Set("_busy_timeout", "5000")
	db := sqlx.NewDb(sql.OpenDB(&connector{dsn: "file:" + escapePath(path) + "?" + q.Encode(), driver: &sqlite3.SQLiteDriver{}}), "sqlite3")
	db.SetMaxOpenConns(1)
	return db
}

// escapePath makes path safe inside a file: URI.
func escapePath(path string) string {
	return strings.NewReplacer("%", "%25", "#", "%23").Replace(path)
}

// schemaVersion is the last migration goose recorded in db.
func schemaVersion(ctx context.Context, db *sqlx.DB) (int64, error) {
	var v sql.NullInt64
	if err := db.GetContext(ctx, &v, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`); err != nil {
		return 0, err
	}
	if !v.Valid || v.Int64 < 1 {
		return 0, errors.New("no migration recorded")
	}
	return v.Int64, nil
}

// checkCopy checks the copy at path whole and reads what BackupInfo
// reports of it.
func checkCopy(ctx context.Context, path string) (*BackupInfo, error) {
	db := openReadOnly(path)
	defer func() { _ = db.Close() }()
	var problems []string
	if err := db.SelectContext(ctx, &problems, `PRAGMA integrity_check`); err != nil {
		return nil, fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) != 1 || problems[0] != "ok" {
		return nil, fmt.Errorf("integrity check: %s", strings.Join(problems, "; "))
	}
	info := &BackupInfo{}
	var err error
	if info.SchemaVersion, err = schemaVersion(ctx, db); err != nil {
		return nil, err
	}
	var last sql.NullInt64
	err = db.QueryRowxContext(ctx, `SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM steps), (SELECT max(seq) FROM transitions)`).
		Scan(&info.Tasks, &info.Steps, &last)
	if err != nil {
		return nil, fmt.Errorf("count tasks and steps: %w", err)
	}
	if last.Valid {
		info.LastEvent = formatCursor(last.Int64)
	}
	return info, nil
}

// syncFile flushes path (a file or a directory) to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
