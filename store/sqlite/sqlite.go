// Package sqlite is the embedded store driver: one SQLite file in WAL mode,
// written by a single group-committing connection and read by a pool.
//
// Every write (TaskCreate, TaskAdvance, TemplateRegister) goes through one
// committer goroutine that runs whatever requests are waiting in a single
// transaction, each inside its own savepoint. That keeps synchronous=FULL
// affordable: a busy coordinator pays one fsync per batch, not per write, and
// an idle one commits at once because the committer never waits for company.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" database/sql driver
	"github.com/pressly/goose/v3"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var _ store.Store = (*Store)(nil)

// Config configures Open. Only Path is required.
type Config struct {
	// Path is the database file; it is created if missing. It may not
	// contain '?' and may not be ":memory:", because the writer and the
	// readers are separate connections that must see one file.
	Path string
	// Synchronous is "full" (the default: a returned write survives power
	// loss) or "normal" (faster; in WAL mode the last commits may be lost on
	// power loss, never corrupted).
	Synchronous string
	// BusyTimeout is how long a connection waits for a lock held by another
	// process before failing; default 5s.
	BusyTimeout time.Duration
	// MaxBatch caps the requests committed in one transaction; default 512.
	// Larger batches amortise more fsyncs but make every caller in the batch
	// wait for the slowest request in it.
	MaxBatch int
	// Logger receives batch failures and migration progress; default discards.
	Logger *slog.Logger
}

// Store is the SQLite implementation of store.Store.
type Store struct {
	logger *slog.Logger
	writer *sqlx.DB // one connection, used only by the committer
	// wconn is writer's one connection, held for the committer's
	// transactions; raw runs statements on it directly (raw.go).
	wconn *sqlx.Conn
	raw   *rawWriter
	// pending keeps its storage from batch to batch: the transitions of a
	// batch's standing requests (runBatch; one batch runs at a time).
	pending []pendingTransition
	stmts   map[string]*sql.Stmt // write statements prepared on wconn
	reader  *sqlx.DB             // query-only pool; WAL readers never block the writer

	committer *groupcommit.Committer[applyFunc]
	// tail is the newest part of the event log, in memory; keys are the
	// namespaces and names of the tasks the committer is writing for,
	// used only on its goroutine (see tail.go).
	tail *eventTail
	keys taskKeys
	// buckets are the rate limits' tokens (see buckets).
	buckets  *buckets
	ckpt     *sqlx.DB      // one connection for background checkpoints
	ckptDone chan struct{} // closed when the checkpointer has returned
	// finishCkpt asks the committer to finish a checkpoint before its next
	// batch (see finishCheckpoint).
	finishCkpt atomic.Bool
	// restores are the store's restore points, oldest first (see
	// backup.go).
	restores []restorePoint

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the database at cfg.Path, applies pending
// migrations and starts the group committer. Close the Store when done.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}

	writer := sqlx.NewDb(sql.OpenDB(&connector{dsn: cfg.dsn(true), driver: &sqlite3.SQLiteDriver{
		// Savepoint sub-journals (one per write in a batch) go to memory
		// rather than temporary files, and checkpoints are left to the
		// checkpointer; the DSN has no parameters for these.
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec("PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = "+strconv.Itoa(walJournalLimit), nil)
			return err
		},
	}}), "sqlite3")
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	if err := migrate(ctx, writer, cfg.Logger); err != nil {
		return nil, errors.Join(err, writer.Close())
	}

	// Restore points never change while the store is open: only a backup
	// adds one, to its copy.
	var restores []restorePoint
	if err := writer.SelectContext(ctx, &restores, `SELECT restored_after, seq_base FROM event_restores ORDER BY seq_base`); err != nil {
		return nil, errors.Join(fmt.Errorf("read restore points of %s: %w", cfg.Path, err), writer.Close())
	}

	reader, err := sqlx.Open("sqlite3", cfg.dsn(false))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite reader %s: %w", cfg.Path, err), writer.Close())
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(readers)
	reader.SetMaxIdleConns(readers)
	if err := reader.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite reader %s: %w", cfg.Path, err), reader.Close(), writer.Close())
	}
	ckpt, err := sqlx.Open("sqlite3", cfg.dsn(true))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite checkpointer %s: %w", cfg.Path, err), reader.Close(), writer.Close())
	}
	ckpt.SetMaxOpenConns(1)
	wconn, err := writer.Connx(ctx)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite writer %s: %w", cfg.Path, err), ckpt.Close(), reader.Close(), writer.Close())
	}
	stmts, err := prepareWrites(ctx, wconn)
	if err != nil {
		return nil, errors.Join(err, wconn.Close(), ckpt.Close(), reader.Close(), writer.Close())
	}
	raw, err := newRawWriter(ctx, wconn.Conn)
	if err != nil {
		return nil, errors.Join(err, closeStatements(stmts), wconn.Close(), ckpt.Close(), reader.Close(), writer.Close())
	}

	s := &Store{
		// version -1: the first batch reads the lines.
		buckets:  &buckets{at: map[bucketKey]admission.Bucket{}, lines: map[string]bool{}, limits: map[string]admission.Limit{}, version: -1},
		logger:   cfg.Logger,
		writer:   writer,
		wconn:    wconn,
		raw:      raw,
		stmts:    stmts,
		reader:   reader,
		ckpt:     ckpt,
		ckptDone: make(chan struct{}),
		tail:     newEventTail(tailCapacity),
		keys:     taskKeys{},
		restores: restores,
	}
	s.committer = groupcommit.Start(cfg.MaxBatch, s.commitBatch, s.batchFailed)
	go checkpointLoop(s.ckpt, s.committer.Closing(), s.ckptDone, &s.finishCkpt, s.logger)
	return s, nil
}

// Close stops the committer once its current batch is answered and closes
// the database. Writes still waiting for the committer, and every call after
// Close, get store.ErrClosed. Close may be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.committer.Close()
		<-s.ckptDone
		// Readers first, so the writer is the last connection and SQLite
		// checkpoints the WAL back into the main file.
		s.closeErr = errors.Join(s.reader.Close(), s.ckpt.Close(), closeStatements(s.stmts), s.raw.close(), s.wconn.Close(), s.writer.Close())
	})
	return s.closeErr
}

// Stats returns the group committer's cumulative counters, so callers (the
// bench command, the metrics) can see how well writes are being batched.
func (s *Store) Stats() groupcommit.Stats { return s.committer.Stats() }

func (s *Store) isClosed() bool { return s.committer.Closed() }

// readErr wraps a failed read, turning the pool's "database is closed" into
// store.ErrClosed when the store was closed under the caller.
func (s *Store) readErr(err error, format string, args ...any) error {
	if s.isClosed() {
		return fmt.Errorf(format+": %w", append(args, store.ErrClosed)...)
	}
	return fmt.Errorf(format+": %w", append(args, classify(err))...)
}

func (c Config) withDefaults() (Config, error) {
	if c.Path == "" {
		return c, errors.New("sqlite: Config.Path is required")
	}
	if c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:") || strings.ContainsRune(c.Path, '?') {
		return c, fmt.Errorf("sqlite: Config.Path %q must be a plain file path (no ':memory:', 'file:' or '?')", c.Path)
	}
	switch strings.ToLower(c.Synchronous) {
	case "", "full":
		c.Synchronous = "FULL"
	case "normal":
		c.Synchronous = "NORMAL"
	default:
		return c, fmt.Errorf("sqlite: Config.Synchronous %q: want \"full\" or \"normal\"", c.Synchronous)
	}
	switch {
	case c.BusyTimeout == 0:
		c.BusyTimeout = 5 * time.Second
	case c.BusyTimeout < 0:
		return c, fmt.Errorf("sqlite: Config.BusyTimeout %s is negative", c.BusyTimeout)
	}
	switch {
	case c.MaxBatch == 0:
		c.MaxBatch = 512
	case c.MaxBatch < 0:
		return c, fmt.Errorf("sqlite: Config.MaxBatch %d is negative", c.MaxBatch)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// dsn sets every pragma through go-sqlite3's DSN parameters, so each pooled
// connection gets them when it is opened, not just the first one.
func (c Config) dsn(writer bool) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", c.Synchronous) // after WAL, which would imply NORMAL
	q.Set("_busy_timeout", strconv.FormatInt(c.BusyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "on")
	q.Set("_stmt_cache_size", "64")
	// database/sql never uses one connection from two goroutines at once,
	// so SQLite's per-connection mutex (taken on every call into it) is
	// left out: the "multi-thread" mode, SQLITE_OPEN_NOMUTEX.
	q.Set("_mutex", "no")
	cache := readerCacheKiB // pagecache.go says why the two differ
	if writer {
		cache = writerCacheKiB
	}
	q.Set("_cache_size", "-"+strconv.Itoa(cache))
	if writer {
		// Take the write lock at BEGIN, so a transaction never fails half
		// way through on a lock upgrade.
		q.Set("_txlock", "immediate")
	} else {
		q.Set("_query_only", "on")
	}
	return c.Path + "?" + q.Encode()
}

func migrate(ctx context.Context, db *sqlx.DB, logger *slog.Logger) error {
	provider, err := migrations(db, logger)
	if err != nil {
		return err
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("sqlite migrations: %w", err)
	}
	return nil
}

// migrations is the schema's history for goose: the SQL files and the Go
// migrations.
func migrations(db *sqlx.DB, logger *slog.Logger) (*goose.Provider, error) {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite migrations: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectSQLite3, db.DB, fsys,
		goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(stateChecksMigration()),
		goose.WithSlog(logger),
	)
	if err != nil {
		return nil, fmt.Errorf("sqlite migrations: %w", err)
	}
	return provider, nil
}

// connector opens connections with a driver value of our own, so a
// ConnectHook can run without registering a driver globally.
type connector struct {
	dsn    string
	driver *sqlite3.SQLiteDriver
}

func (c *connector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c *connector) Driver() driver.Driver                        { return c.driver }
