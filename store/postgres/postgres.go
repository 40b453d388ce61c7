// Package postgres is the store driver for coordinators that share one
// PostgreSQL database. It keeps the SQLite driver's semantics and its group
// commit: every write (TaskCreate, TaskAdvance, TemplateRegister, and the
// lease writes LeaseAcquire, LeaseRenew, TaskClaim) goes through one
// committer goroutine, which runs whatever requests are waiting in a single
// transaction, each inside its own savepoint, so a busy coordinator pays one
// commit (one WAL flush) per batch, not per write.
//
// PostgreSQL adds a round trip per statement that SQLite does not have, so
// the committer pipelines: a whole batch (BEGIN, every request's statements,
// COMMIT) is sent as one pgx.Batch and answered in one round trip. Each
// conditional write refuses inside the server when its precondition fails
// (see migrations/00001_init.sql; 00002_leases.sql adds the lease fence),
// which stops the pipeline at that request; the committer rolls it back to
// its savepoint and sends the rest again.
//
// Reads go through a separate connection pool, so a burst of reads never
// delays a commit.
//
// It needs PostgreSQL 12 or later.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/groupcommit"
)

var _ store.Store = (*Store)(nil)

// Config configures Open. Only URL is required.
type Config struct {
	// URL is a libpq connection string or postgres:// URL.
	URL string
	// Schema, when set, is created if missing and is the only schema on the
	// search path of every connection, so the tables live there. Tests use
	// it to give each store a database of its own; deployments usually leave
	// it empty and use the URL's search_path (normally public).
	Schema string
	// MaxBatch caps the requests committed in one transaction; default 256.
	// Larger batches amortise more commits, but every caller in a batch waits
	// for the whole batch. A batch rerun with savepoints (after a refusal)
	// runs in transactions of at most 64 requests whatever this is (see
	// savepointRun).
	MaxBatch int
	// MaxConns caps the read pool; default max(4, GOMAXPROCS). The committer
	// holds one more connection of its own.
	MaxConns int32
	// Logger receives batch failures and migration progress; default discards.
	Logger *slog.Logger
}

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	logger    *slog.Logger
	writer    *pgxpool.Pool // one connection, used only by the committer
	reader    *pgxpool.Pool
	committer *groupcommit.Committer[queueFunc]
	// listen connects AdmissionListen's own connection; channel is the
	// notification channel of this schema's coordinators.
	listen  *pgx.ConnConfig
	channel string
	// xactBase moves this cluster's transaction ids into the store's
	// current era, and restores are its restore points, oldest first
	// (both fixed at Open; see restore.go).
	xactBase int64
	restores []restorePoint

	closeOnce sync.Once
}

// Open connects to the database, creates cfg.Schema if set, applies pending
// migrations (under an advisory lock, so coordinators starting together do
// not race) and starts the group committer. Close the Store when done.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	base, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse Config.URL: %w", err)
	}
	if cfg.Schema != "" {
		base.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}

	settings, err := migrate(ctx, base.ConnConfig, cfg.Schema, cfg.Logger)
	if err != nil {
		return nil, err
	}

	writerCfg := base.Copy()
	writerCfg.MaxConns = 1
	writerCfg.MinConns = 1
	writerCfg.AfterConnect = prepareWriteStatements
	// Every write statement finds its rows by key, so one generic plan
	// serves all parameter values; left to choose, the server keeps
	// re-planning the create statement, which costs more than running it
	// (measured: serial TaskCreate 1.2-1.8 ms → 0.7 ms).
	writerCfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	// The writer's statements join few rows to rows found by key, where
	// nested loops over index lookups are right, and a generic plan made
	// on small tables must not keep a hash join that reads a whole table
	// once they have grown (see advanceGroup). JIT never pays for
	// statements this small.
	writerCfg.ConnConfig.RuntimeParams["enable_hashjoin"] = "off"
	writerCfg.ConnConfig.RuntimeParams["enable_mergejoin"] = "off"
	writerCfg.ConnConfig.RuntimeParams["jit"] = "off"
	if settings.synchronousCommit == "off" {
		// A returned write must be durable; the server's default would
		// acknowledge commits before their WAL is flushed.
		cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "postgres synchronous_commit is off; the committer turns it on for its connection")
		writerCfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	}
	writer, err := pgxpool.NewWithConfig(ctx, writerCfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open writer: %w", classify(err))
	}
	// Connect now, so a statement that fails to prepare fails Open rather
	// than the first write.
	if err := writer.Ping(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("postgres: open writer: %w", classify(err))
	}

	readerCfg := base.Copy()
	readerCfg.MaxConns = cfg.MaxConns
	reader, err := pgxpool.NewWithConfig(ctx, readerCfg)
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("postgres: open reader: %w", classify(err))
	}

	s := &Store{logger: cfg.Logger, writer: writer, reader: reader, listen: base.ConnConfig.Copy(), channel: admissionChannel(cfg.Schema),
		xactBase: settings.restores.xactBase, restores: settings.restores.points}
	s.committer = groupcommit.Start(cfg.MaxBatch, s.commitBatch, s.batchFailed)
	return s, nil
}

// Close stops the committer once its current batch is answered and closes
// both pools, waiting for reads in progress. Writes still waiting for the
// committer, and every call after Close, get store.ErrClosed. Close may be
// called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.committer.Close()
		s.reader.Close()
		s.writer.Close()
	})
	return nil
}

// Stats returns the group committer's cumulative counters, so callers (the
// bench command, the metrics) can see how well writes are being batched.
func (s *Store) Stats() groupcommit.Stats { return s.committer.Stats() }

func (s *Store) isClosed() bool { return s.committer.Closed() }

// readErr wraps a failed read, turning the pool's "closed pool" into
// store.ErrClosed when the store was closed under the caller.
func (s *Store) readErr(err error, format string, args ...any) error {
	if s.isClosed() {
		return fmt.Errorf(format+": %w", append(args, store.ErrClosed)...)
	}
	return fmt.Errorf(format+": %w", append(args, classify(err))...)
}

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("postgres: Config.URL is required")
	}
	switch {
	case c.MaxBatch == 0:
		c.MaxBatch = 256
	case c.MaxBatch < 0:
		return c, fmt.Errorf("postgres: Config.MaxBatch %d is negative", c.MaxBatch)
	}
	switch {
	case c.MaxConns == 0:
		c.MaxConns = int32(max(4, runtime.GOMAXPROCS(0)))
	case c.MaxConns < 0:
		return c, fmt.Errorf("postgres: Config.MaxConns %d is negative", c.MaxConns)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
