package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// LeaseAcquire implements store.Store.
func (s *Store) LeaseAcquire(ctx context.Context, params *store.LeaseAcquireParams) (*store.Lease, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	lease := &store.Lease{CoordinatorID: params.CoordinatorID, Expires: params.Now.Add(params.TTL), Address: params.Address}
	err := s.write(ctx, "LeaseAcquire", func(ctx context.Context, tx *wtx) error {
		if err := tx.QueryRowContext(ctx, `UPDATE lease_tokens SET value = value + 1 WHERE id = 1 RETURNING value`).Scan(&lease.Token); err != nil {
			return fmt.Errorf("next lease token: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO leases (coordinator_id, token, expires_at, address) VALUES (?, ?, ?, ?)
			ON CONFLICT (coordinator_id) DO UPDATE
			SET token = excluded.token, expires_at = excluded.expires_at, address = excluded.address`,
			lease.CoordinatorID, lease.Token, toNanos(lease.Expires), lease.Address)
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
	if err := params.Validate(); err != nil {
		return nil, err
	}
	renewed := *params.Lease
	renewed.Expires = params.Now.Add(params.TTL)
	err := s.write(ctx, "LeaseRenew", func(ctx context.Context, tx *wtx) error {
		// The address is the stored one, whatever the caller's copy says.
		err := tx.QueryRowContext(ctx, `UPDATE leases SET expires_at = ?
			WHERE coordinator_id = ? AND token = ? AND expires_at > ?
			RETURNING address`,
			toNanos(renewed.Expires), renewed.CoordinatorID, renewed.Token, toNanos(params.Now)).Scan(&renewed.Address)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("renew lease %d of %s: expired or replaced: %w", renewed.Token, renewed.CoordinatorID, store.ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("renew lease %d of %s: %w", renewed.Token, renewed.CoordinatorID, err)
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
	var rows []leaseRow
	if err := s.reader.SelectContext(ctx, &rows, `SELECT `+leaseColumns+` FROM leases
		WHERE expires_at > ? ORDER BY coordinator_id`, toNanos(now)); err != nil {
		return nil, s.readErr(err, "list leases")
	}
	out := make([]*store.Lease, len(rows))
	for i := range rows {
		out[i] = rows[i].lease()
	}
	return out, nil
}

// taskClaimSQL gives the lease ?1 up to ?3 tasks with work whose owner is
// not live at ?2, oldest first. It merges two streams already in id order,
// each from a partial index that holds only work: unfinished tasks
// (tasks_active_id), and the running steps of tasks in error
// (steps_in_progress, walked first by CROSS JOIN, which SQLite never
// reorders). So the claim stops after ?3 candidates and never reads a
// finished task without a running step. INDEXED BY fails the statement
// rather than falling back to a scan if an index ever stops matching.
const taskClaimSQL = `UPDATE tasks SET owner_token = ?1
	WHERE id IN (
		SELECT id FROM tasks INDEXED BY tasks_active_id
		WHERE state IN ('` + string(state.Pending) + `', '` + string(state.InProgress) + `')
			AND owner_token NOT IN (SELECT token FROM leases WHERE expires_at > ?2)
		UNION
		SELECT s.task_id FROM steps AS s INDEXED BY steps_in_progress CROSS JOIN tasks AS t ON t.id = s.task_id
		WHERE s.state = '` + string(state.InProgress) + `' AND t.state = '` + string(state.Error) + `'
			AND t.owner_token NOT IN (SELECT token FROM leases WHERE expires_at > ?2)
		ORDER BY 1 LIMIT ?3)
	RETURNING ` + taskColumns

// TaskClaim implements store.Store.
func (s *Store) TaskClaim(ctx context.Context, params *store.TaskClaimParams) ([]*store.Task, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	limit := listLimit(params.Limit)
	now := toNanos(params.Now)
	var out []*store.Task
	err := s.write(ctx, "TaskClaim", func(ctx context.Context, tx *wtx) error {
		if err := requireLive(ctx, tx, params.Lease, now); err != nil {
			return fmt.Errorf("claim tasks: %w", err)
		}
		var rows []taskRow
		if err := tx.SelectContext(ctx, &rows, taskClaimSQL, params.Lease.Token, now, limit); err != nil {
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
	slices.SortFunc(out, func(a, b *store.Task) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// TaskTake implements store.Store. The committer runs one write at a time
// on the only connection that writes, so the checks and the update cannot
// interleave with another claim, take or advance.
func (s *Store) TaskTake(ctx context.Context, params *store.TaskTakeParams) (*store.Task, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	l := params.Lease
	now := toNanos(params.Now)
	var out *store.Task
	err := s.write(ctx, "TaskTake", func(ctx context.Context, tx *wtx) error {
		if err := requireLive(ctx, tx, l, now); err != nil {
			return fmt.Errorf("take task %s: %w", params.TaskID, err)
		}
		var owner int64
		err := tx.GetContext(ctx, &owner, `SELECT owner_token FROM tasks WHERE id = ?`, params.TaskID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("take task %s: %w", params.TaskID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("take task %s: %w", params.TaskID, err)
		}
		if owner != l.Token {
			var live leaseRow
			err := tx.GetContext(ctx, &live, `SELECT `+leaseColumns+` FROM leases WHERE token = ? AND expires_at > ?`, owner, now)
			switch {
			case err == nil:
				return &store.OwnedError{TaskID: params.TaskID, Owner: *live.lease()}
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("take task %s: read owner lease %d: %w", params.TaskID, owner, err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE tasks SET owner_token = ? WHERE id = ?`, l.Token, params.TaskID); err != nil {
				return fmt.Errorf("take task %s: %w", params.TaskID, err)
			}
		}
		var row taskRow
		if err := tx.GetContext(ctx, &row, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, params.TaskID); err != nil {
			return fmt.Errorf("take task %s: read it back: %w", params.TaskID, err)
		}
		out, err = row.task()
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// requireLive refuses with store.ErrLeaseLost unless l is live at now.
func requireLive(ctx context.Context, tx *wtx, l *store.Lease, now int64) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM leases WHERE token = ? AND expires_at > ?`, l.Token, now).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("lease %d of %s is not live: %w", l.Token, l.CoordinatorID, store.ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("check lease %d: %w", l.Token, err)
	}
	return nil
}
