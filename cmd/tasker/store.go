package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/postgres"
	"github.com/tasker-go/tasker/store/sqlite"
)

// openedStore is the store a coordinator runs on, with its group-commit
// counters for the metrics.
type openedStore struct {
	store.Store
	// stats reports cumulative commits and the writes they carried.
	stats func() (commits, writes int64)
	// describe names the store in logs without credentials.
	describe string
}

// Store kinds parseDB tells apart.
const (
	storeSQLite   = "sqlite"
	storePostgres = "postgres"
)

// urlScheme splits a leading URL scheme ("name:") off db. A one-letter
// scheme is not one, so a Windows drive letter (C:) stays part of a path.
func urlScheme(db string) (scheme, rest string, ok bool) {
	i := strings.IndexByte(db, ':')
	if i < 2 {
		return "", db, false
	}
	for j, c := range db[:i] {
		letter := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (j == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '.' || c == '-')) {
			return "", db, false
		}
	}
	return strings.ToLower(db[:i]), db[i+1:], true
}

// parseDB reads --db: a postgres:// or postgresql:// URL selects
// PostgreSQL (target is the URL); sqlite:PATH, sqlite://PATH or a plain
// file path select SQLite (target is the path). Any other scheme is refused
// rather than taken for a file name, and the error never repeats the value,
// which may hold a password.
func parseDB(db string) (kind, target string, err error) {
	if db == "" {
		return "", "", errors.New("--db is empty: give a SQLite file path, sqlite:PATH, or a postgres:// URL")
	}
	scheme, rest, ok := urlScheme(db)
	if !ok {
		return storeSQLite, db, nil
	}
	switch scheme {
	case "sqlite":
		path := strings.TrimPrefix(rest, "//")
		if path == "" {
			return "", "", errors.New("--db: sqlite: needs a path, e.g. sqlite:/var/lib/tasker/tasker.db")
		}
		return storeSQLite, path, nil
	case "postgres", "postgresql":
		if !strings.HasPrefix(rest, "//") {
			return "", "", errors.New("--db: want postgres://HOST/DB or postgresql://HOST/DB")
		}
		return storePostgres, db, nil
	default:
		return "", "", fmt.Errorf("--db: unsupported scheme %q: want a SQLite file path, sqlite:PATH, or a postgres:// or postgresql:// URL", scheme)
	}
}

// validate checks --db and --sync without opening anything.
func (s *storeFlags) validate() error {
	kind, _, err := parseDB(s.db)
	if err != nil {
		return err
	}
	if kind == storeSQLite && s.sync != "full" && s.sync != "normal" {
		return fmt.Errorf("--sync: want full or normal, got %q", s.sync)
	}
	return nil
}

// openStore opens the store --db names (see parseDB).
func openStore(ctx context.Context, f storeFlags, log *slog.Logger) (*openedStore, error) {
	kind, target, err := parseDB(f.db)
	if err != nil {
		return nil, err
	}
	if kind == storePostgres {
		st, err := postgres.Open(ctx, postgres.Config{URL: target, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL store: %w", err)
		}
		return &openedStore{Store: st, describe: "postgres", stats: func() (int64, int64) {
			s := st.Stats()
			return s.Commits, s.Requests
		}}, nil
	}
	st, err := sqlite.Open(ctx, sqlite.Config{Path: target, Synchronous: f.sync, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open SQLite store %s: %w", target, err)
	}
	return &openedStore{Store: st, describe: "sqlite:" + target, stats: func() (int64, int64) {
		s := st.Stats()
		return s.Commits, s.Requests
	}}, nil
}
