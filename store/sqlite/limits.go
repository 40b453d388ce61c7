package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/store"
)

const rateLimitColumns = `name, units, period_ms, burst, created_at, updated_at`

type rateLimitRow struct {
	Name      string `db:"name"`
	Units     int64  `db:"units"`
	PeriodMS  int64  `db:"period_ms"`
	Burst     int64  `db:"burst"`
	CreatedAt int64  `db:"created_at"`
	UpdatedAt int64  `db:"updated_at"`
}

func (r *rateLimitRow) rateLimit() *store.RateLimit {
	return &store.RateLimit{
		Name:      r.Name,
		Units:     r.Units,
		Period:    time.Duration(r.PeriodMS) * time.Millisecond,
		Burst:     r.Burst,
		CreatedAt: fromNanos(r.CreatedAt),
		UpdatedAt: fromNanos(r.UpdatedAt),
	}
}

// RateLimitSet implements store.Store.
func (s *Store) RateLimitSet(ctx context.Context, params *store.RateLimitSetParams) (*store.RateLimit, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	var out *store.RateLimit
	err := s.write(ctx, "RateLimitSet", func(ctx context.Context, tx *wtx) error {
		tx.buckets.forget(params.Name)
		var row rateLimitRow
		err := tx.QueryRowContext(ctx, `INSERT INTO rate_limits (`+rateLimitColumns+`)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET units = excluded.units, period_ms = excluded.period_ms,
				burst = excluded.burst, updated_at = excluded.updated_at
			RETURNING `+rateLimitColumns,
			params.Name, params.Units, params.Period.Milliseconds(), params.Burst, toNanos(params.At), toNanos(params.At),
		).Scan(&row.Name, &row.Units, &row.PeriodMS, &row.Burst, &row.CreatedAt, &row.UpdatedAt)
		if err != nil {
			return fmt.Errorf("set rate limit %q: %w", params.Name, err)
		}
		out = row.rateLimit()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RateLimitGet implements store.Store.
func (s *Store) RateLimitGet(ctx context.Context, name string) (*store.RateLimit, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("RateLimitGet: %w", store.ErrClosed)
	}
	var row rateLimitRow
	err := s.reader.GetContext(ctx, &row, `SELECT `+rateLimitColumns+` FROM rate_limits WHERE name = ?`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("rate limit %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get rate limit %q", name)
	}
	return row.rateLimit(), nil
}

// RateLimitList implements store.Store.
func (s *Store) RateLimitList(ctx context.Context) ([]*store.RateLimit, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("RateLimitList: %w", store.ErrClosed)
	}
	var rows []rateLimitRow
	if err := s.reader.SelectContext(ctx, &rows, `SELECT `+rateLimitColumns+` FROM rate_limits ORDER BY name`); err != nil {
		return nil, s.readErr(err, "list rate limits")
	}
	out := make([]*store.RateLimit, len(rows))
	for i := range rows {
		out[i] = rows[i].rateLimit()
	}
	return out, nil
}

// RateLimitDelete implements store.Store.
func (s *Store) RateLimitDelete(ctx context.Context, name string) error {
	return s.write(ctx, "RateLimitDelete", func(ctx context.Context, tx *wtx) error {
		tx.buckets.forget(name)
		res, err := tx.ExecContext(ctx, `DELETE FROM rate_limits WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete rate limit %q: %w", name, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("delete rate limit %q: %w", name, err)
		}
		if n == 0 {
			return fmt.Errorf("rate limit %q: %w", name, store.ErrNotFound)
		}
		return nil
	})
}
