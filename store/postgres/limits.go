package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/store"
)

const rateLimitColumns = `name, units, period_ms, burst, created_at, updated_at`

// Rate-limit writes are rare (an operator's command), so their statements
// are not among the committer's prepared ones; pgx prepares and caches them
// on first use.
const (
	rateLimitSetSQL = `INSERT INTO rate_limits (` + rateLimitColumns + `)
	VALUES ($1::text, $2::bigint, $3::bigint, $4::bigint, $5::bigint, $5::bigint)
	ON CONFLICT (name) DO UPDATE SET units = excluded.units, period_ms = excluded.period_ms,
		burst = excluded.burst, updated_at = excluded.updated_at
	RETURNING ` + rateLimitColumns
	// A delete of no row changes nothing, so it need not stop the
	// pipeline: the caller learns from the count.
	rateLimitDeleteSQL = `DELETE FROM rate_limits WHERE name = $1::text RETURNING name`
)

func scanRateLimit(row pgx.Row) (*store.RateLimit, error) {
	var (
		r                         store.RateLimit
		periodMS, created, update int64
	)
	if err := row.Scan(&r.Name, &r.Units, &periodMS, &r.Burst, &created, &update); err != nil {
		return nil, err
	}
	r.Period = time.Duration(periodMS) * time.Millisecond
	r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(update)
	return &r, nil
}

// RateLimitSet implements store.Store.
func (s *Store) RateLimitSet(ctx context.Context, params *store.RateLimitSetParams) (*store.RateLimit, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	args := []any{params.Name, params.Units, params.Period.Milliseconds(), params.Burst, toNanos(params.At)}
	var out *store.RateLimit
	err := s.write(ctx, "RateLimitSet", func(p *pipe) {
		out = nil
		p.query(rateLimitSetSQL, args, func(rows pgx.Rows) error {
			var err error
			out, err = scanRateLimit(rows)
			return err
		}, func(err *pgconn.PgError) error {
			return fmt.Errorf("RateLimitSet: set rate limit %q: %w", params.Name, err)
		})
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, fmt.Errorf("RateLimitSet: rate limit %q: the upsert returned no row", params.Name)
	}
	return out, nil
}

// RateLimitGet implements store.Store.
func (s *Store) RateLimitGet(ctx context.Context, name string) (*store.RateLimit, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("RateLimitGet: %w", store.ErrClosed)
	}
	r, err := scanRateLimit(s.reader.QueryRow(ctx, `SELECT `+rateLimitColumns+` FROM rate_limits WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("rate limit %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get rate limit %q", name)
	}
	return r, nil
}

// RateLimitList implements store.Store.
func (s *Store) RateLimitList(ctx context.Context) ([]*store.RateLimit, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("RateLimitList: %w", store.ErrClosed)
	}
	rows, err := s.reader.Query(ctx, `SELECT `+rateLimitColumns+` FROM rate_limits ORDER BY name`)
	if err != nil {
		return nil, s.readErr(err, "list rate limits")
	}
	out, err := collect(rows, scanRateLimit)
	if err != nil {
		return nil, s.readErr(err, "list rate limits")
	}
	return out, nil
}

// RateLimitDelete implements store.Store.
func (s *Store) RateLimitDelete(ctx context.Context, name string) error {
	var deleted bool
	err := s.write(ctx, "RateLimitDelete", func(p *pipe) {
		deleted = false
		p.query(rateLimitDeleteSQL, []any{name}, func(pgx.Rows) error {
			deleted = true
			return nil
		}, func(err *pgconn.PgError) error {
			return fmt.Errorf("RateLimitDelete: delete rate limit %q: %w", name, err)
		})
	})
	if err != nil {
		return err
	}
	if !deleted {
		return fmt.Errorf("rate limit %q: %w", name, store.ErrNotFound)
	}
	return nil
}
