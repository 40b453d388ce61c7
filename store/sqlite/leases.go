package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tasker-go/tasker/store"
)

// LeaseAcquire implements store.Store.
func (s *Store) LeaseAcquire(ctx context.Context, params *store.LeaseAcquireParams) (*store.Lease, error) {
	if params == nil || params.CoordinatorID == "" || params.TTL <= 0 {
		return nil, errors.New("LeaseAcquire: a coordinator id and a positive TTL are required")
	}
	lease := &store.Lease{CoordinatorID: params.CoordinatorID, Expires: params.Now.Add(params.TTL)}
	err := s.write(ctx, "LeaseAcquire", func(ctx context.Context, tx *wtx) error {
		if err := tx.QueryRowContext(ctx, `UPDATE lease_tokens SET value = value + 1 WHERE id = 1 RETURNING value`).Scan(&lease.Token); err != nil {
			return fmt.Errorf("next lease token: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO leases (coordinator_id, token, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (coordinator_id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at`,
			lease.CoordinatorID, lease.Token, toNanos(lease.Expires))
		if err != nil {
			return fmt.Errorf("store lease of %s: %w", lease.CoordinatorID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lease, nil
}

// LeaseRenew implements store.Store.
func (s *Store) LeaseRenew(ctx context.Context, params *store.LeaseRenewParams) (*store.Lease, error) {
	if params == nil || params.Lease == nil || params.TTL <= 0 {
		return nil, errors.New("LeaseRenew: a lease and a positive TTL are required")
	}
	renewed := *params.Lease
	renewed.Expires = params.Now.Add(params.TTL)
	err := s.write(ctx, "LeaseRenew", func(ctx context.Context, tx *wtx) error {
		res, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = ?
			WHERE coordinator_id = ? AND token = ? AND expires_at > ?`,
			toNanos(renewed.Expires), renewed.CoordinatorID, renewed.Token, toNanos(params.Now))
		if err != nil {
			return fmt.Errorf("renew lease %d of %s: %w", renewed.Token, renewed.CoordinatorID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("renew lease %d of %s: %w", renewed.Token, renewed.CoordinatorID, err)
		} else if n == 0 {
			return fmt.Errorf("renew lease %d of %s: expired or replaced: %w", renewed.Token, renewed.CoordinatorID, store.ErrLeaseLost)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &renewed, nil
}

// LeaseList implements store.Store.
func (s *Store) LeaseList(ctx context.Context, now time.Time) ([]*store.Lease, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("LeaseList: %w", store.ErrClosed)
	}
	var rows []struct {
		CoordinatorID string `db:"coordinator_id"`
		Token         int64  `db:"token"`
		ExpiresAt     int64  `db:"expires_at"`
	}
	if err := s.reader.SelectContext(ctx, &rows, `SELECT coordinator_id, token, expires_at FROM leases
		WHERE expires_at > ? ORDER BY coordinator_id`, toNanos(now)); err != nil {
		return nil, s.readErr(err, "list leases")
	}
	out := make([]*store.Lease, len(rows))
	for i, r := range rows {
		out[i] = &store.Lease{CoordinatorID: r.CoordinatorID, Token: r.Token, Expires: fromNanos(r.ExpiresAt)}
	}
	return out, nil
}

// TaskClaim implements store.Store.
func (s *Store) TaskClaim(ctx context.Context, params *store.TaskClaimParams) ([]*store.Task, error) {
	if params == nil || params.Lease == nil {
		return nil, errors.New("TaskClaim: a lease is required")
	}
	limit := params.Limit
	if limit <= 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	now := toNanos(params.Now)
	var out []*store.Task
	err := s.write(ctx, "TaskClaim", func(ctx context.Context, tx *wtx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM leases WHERE token = ? AND expires_at > ?`, params.Lease.Token, now).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("claim tasks: lease %d of %s is not live: %w", params.Lease.Token, params.Lease.CoordinatorID, store.ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("claim tasks: check lease: %w", err)
		}
		var rows []taskRow
		err = tx.SelectContext(ctx, &rows, `UPDATE tasks SET owner_token = ?1
			WHERE id IN (
				SELECT id FROM tasks INDEXED BY tasks_active_id
				WHERE state IN ('pending', 'in_progress')
				  AND owner_token NOT IN (SELECT token FROM leases WHERE expires_at > ?2)
				ORDER BY id LIMIT ?3)
			RETURNING `+taskColumns, params.Lease.Token, now, limit)
		if err != nil {
			return fmt.Errorf("claim tasks: %w", err)
		}
		out = make([]*store.Task, 0, len(rows))
		for i := range rows {
			t, err := rows[i].task()
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// RETURNING gives rows in no particular order.
	slicesSortTasks(out)
	return out, nil
}

func slicesSortTasks(ts []*store.Task) {
	slices.SortFunc(ts, func(a, b *store.Task) int { return strings.Compare(a.ID, b.ID) })
}
