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

// openStore opens the store --db names: a postgres:// or postgresql:// URL
// selects PostgreSQL; anything else is a SQLite file (sqlite:PATH and
// sqlite://PATH are accepted too).
func openStore(ctx context.Context, f storeFlags, log *slog.Logger) (*openedStore, error) {
	db := f.db
	switch {
	case db == "":
		return nil, errors.New("--db is empty")
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		st, err := postgres.Open(ctx, postgres.Config{URL: db, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL store: %w", err)
		}
		return &openedStore{Store: st, describe: "postgres", stats: func() (int64, int64) {
			s := st.Stats()
			return s.Commits, s.Requests
		}}, nil
	}
	path := strings.TrimPrefix(strings.TrimPrefix(db, "sqlite://"), "sqlite:")
	st, err := sqlite.Open(ctx, sqlite.Config{Path: path, Synchronous: f.sync, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open SQLite store %s: %w", path, err)
	}
	return &openedStore{Store: st, describe: "sqlite:" + path, stats: func() (int64, int64) {
		s := st.Stats()
		return s.Commits, s.Requests
	}}, nil
}
