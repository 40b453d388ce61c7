package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// serverSettings are what Open learns about the server while migrating.
type serverSettings struct {
	synchronousCommit string
	restores          restoreState
}

// migrate creates schema (if set) and applies pending migrations with goose,
// as the SQLite driver does, so both keep their history in goose_db_version
// and the goose CLI can inspect either.
//
// It does not use goose's own Postgres session locker: that one polls
// (seconds apart), so a coordinator that loses the race would sit idle long
// after the winner finished. Instead one connection holds a blocking
// pg_advisory_lock, keyed by the schema, around CREATE SCHEMA and the
// migrations; the others wait exactly as long as the migration takes, then
// find nothing to do. Stores in different schemas never wait for each other.
func migrate(ctx context.Context, connCfg *pgx.ConnConfig, schema string, logger *slog.Logger) (settings serverSettings, err error) {
	// goose speaks database/sql; pgx's adapter gives it the same connection
	// settings (search_path included) as the pools.
	db := stdlib.OpenDB(*connCfg)
	defer func() { err = errors.Join(err, db.Close()) }()

	// This connection holds the lock while goose works on others.
	lockConn, err := db.Conn(ctx)
	if err != nil {
		return settings, fmt.Errorf("postgres migrations: connect: %w", classify(err))
	}
	defer func() { err = errors.Join(err, lockConn.Close()) }()

	if err := lockConn.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&settings.synchronousCommit); err != nil {
		return settings, fmt.Errorf("postgres migrations: read synchronous_commit: %w", classify(err))
	}

	lockName := schema
	if lockName == "" {
		var current sql.NullString
		if err := lockConn.QueryRowContext(ctx, "SELECT current_schema()").Scan(&current); err != nil {
			return settings, fmt.Errorf("postgres migrations: read current schema: %w", classify(err))
		}
		lockName = current.String
	}
	key := migrationLockKey(lockName)
	if _, err := lockConn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return settings, fmt.Errorf("postgres migrations: lock schema %q: %w", lockName, classify(err))
	}
	defer func() {
		// Use a fresh context: the lock must go even if ctx is done. Closing
		// the session would release it too, but the pool may keep it.
		if _, unlockErr := lockConn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key); unlockErr != nil {
			err = errors.Join(err, fmt.Errorf("postgres migrations: unlock: %w", unlockErr))
		}
	}()

	if schema != "" {
		if _, err := lockConn.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return settings, fmt.Errorf("postgres migrations: create schema %q: %w", schema, classify(err))
		}
	}

	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return settings, fmt.Errorf("postgres migrations: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(logger),
	)
	if err != nil {
		return settings, fmt.Errorf("postgres migrations: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return settings, fmt.Errorf("postgres migrations: %w", classify(err))
	}
	// Still under the lock: one coordinator decides whether this is a
	// restored copy, and the others find its decision.
	settings.restores, err = detectRestore(ctx, lockConn, logger, time.Now())
	return settings, err
}

// migrationLockKey names the advisory lock that serialises migrations of one
// schema. The prefix keeps it apart from locks other software takes.
func migrationLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tasker store migrate\x00" + schema))
	return int64(h.Sum64())
}
