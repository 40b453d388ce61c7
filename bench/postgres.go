package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// IsPostgres reports whether db, a coordinator's --db, selects PostgreSQL
// rather than a SQLite file; the coordinator command decides the same way.
func IsPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// ErrNotPostgres is wrapped by CreateSchema when given something other than
// a postgres:// URL.
var ErrNotPostgres = errors.New("not a postgres:// URL")

// Schema is a PostgreSQL schema made for one run. A run in a schema of its
// own starts from empty tables, as a run on a new SQLite file does, so its
// figures do not depend on what earlier runs left behind, and dropping the
// schema removes every trace of it.
type Schema struct {
	// Name is the schema's name.
	Name string
	// URL is the database URL with search_path set to Name: the --db that
	// makes a coordinator keep its tables there.
	URL string

	base string
}

// CreateSchema creates a new, uniquely named schema in the database dbURL
// names. Drop it when the run is over.
func CreateSchema(ctx context.Context, dbURL string) (*Schema, error) {
	if !IsPostgres(dbURL) {
		return nil, fmt.Errorf("create schema: %w", ErrNotPostgres)
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := "tasker_bench_" + time.Now().UTC().Format("20060102_150405") + "_" + hex.EncodeToString(suffix[:])
	withPath, err := withSearchPath(dbURL, name)
	if err != nil {
		return nil, err
	}
	if err := execOnce(ctx, dbURL, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", name, err)
	}
	return &Schema{Name: name, URL: withPath, base: dbURL}, nil
}

// Drop removes the schema and everything in it. Stop the coordinators using
// it first: their sessions hold locks DROP would wait for.
func (s *Schema) Drop(ctx context.Context) error {
	if err := execOnce(ctx, s.base, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.Name}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", s.Name, err)
	}
	return nil
}

// withSearchPath returns dbURL with its search_path query parameter, which
// pgx sends to the server as a session setting, set to schema alone, so
// nothing is read from or written to another schema by mistake.
func withSearchPath(dbURL, schema string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// execOnce runs one statement on a connection of its own.
func execOnce(ctx context.Context, dbURL, sql string) (err error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { err = errors.Join(err, conn.Close(context.WithoutCancel(ctx))) }()
	if _, err := conn.Exec(ctx, sql); err != nil {
		return err
	}
	return nil
}
