package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

const (
	stmtLeaseAcquire = "tasker_lease_acquire"
	stmtLeaseRenew   = "tasker_lease_renew"
	stmtLeaseLive    = "tasker_lease_live"
	stmtTaskClaim    = "tasker_task_claim"
)

// leaseAcquireSQL starts or replaces a coordinator's lease. The token comes
// from a sequence, so it is larger than any token handed out before, by
// this or any other coordinator sharing the database.
const leaseAcquireSQL = `INSERT INTO leases (coordinator_id, token, expires_at)
VALUES ($1::text, nextval('lease_tokens'), $2::bigint)
ON CONFLICT (coordinator_id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
RETURNING token`

// leaseRenewSQL extends the lease if it is still the coordinator's and live
// at $4; if not, tasker_lease_refused raises TK410 and says why.
const leaseRenewSQL = `WITH renewed AS (
	UPDATE leases SET expires_at = $3::bigint
	WHERE coordinator_id = $1::text AND token = $2::bigint AND expires_at > $4::bigint
	RETURNING token
)
SELECT token FROM renewed
UNION ALL
SELECT tasker_lease_refused(NULL, $2::bigint, $4::bigint)
WHERE NOT EXISTS (SELECT 1 FROM renewed)`

// leaseLiveSQL refuses (TK410) a claim by a lease that is not live at $2. It
// is queued just before taskClaimSQL in the same request, so a dead lease
// stops the pipeline before claiming anything.
const leaseLiveSQL = `SELECT tasker_lease_refused(NULL, $1::bigint, $2::bigint)
WHERE NOT EXISTS (SELECT 1 FROM leases WHERE token = $1::bigint AND expires_at > $2::bigint)`

// taskClaimSQL gives the lease $1 the oldest unfinished tasks whose owner is
// not live at $2 (token 0, expired, or replaced, which leaves the token in
// no lease row). SKIP LOCKED makes concurrent claimers split the tasks
// instead of queueing behind each other, and skips tasks a fenced advance of
// their current owner holds (see fenceSQL) until that advance commits. The
// state filter repeats the partial index tasks_active_id word for word, so
// the scan reads only unfinished tasks, in id order.
//
// The NOT IN reads the leases as of the statement's start, which is cheap
// but not enough: a task another coordinator claimed after that, under a
// lease acquired after that, is locked here and re-checked against the
// same old view of leases, where its new owner does not exist. So a task
// that passes is checked once more by tasker_lease_live, which reads the
// leases as they are now (see 00002_leases.sql).
const taskClaimSQL = `WITH picked AS MATERIALIZED (
	SELECT id FROM tasks
	WHERE state IN ('` + string(state.Pending) + `', '` + string(state.InProgress) + `')
		AND owner_token NOT IN (SELECT token FROM leases WHERE expires_at > $2::bigint)
		AND NOT tasker_lease_live(owner_token, $2::bigint)
	ORDER BY id
	LIMIT $3::bigint
	FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE tasks SET owner_token = $1::bigint
WHERE id IN (SELECT id FROM picked)
RETURNING ` + taskColumns

// LeaseAcquire implements store.Store.
func (s *Store) LeaseAcquire(ctx context.Context, params *store.LeaseAcquireParams) (*store.Lease, error) {
	if params == nil || params.CoordinatorID == "" || params.TTL <= 0 {
		return nil, errors.New("LeaseAcquire: a coordinator id and a positive TTL are required")
	}
	lease := &store.Lease{CoordinatorID: params.CoordinatorID, Expires: params.Now.Add(params.TTL)}
	expires := toNanos(lease.Expires)
	err := s.write(ctx, "LeaseAcquire", func(p *pipe) {
		lease.Token = 0
		p.query(stmtLeaseAcquire, []any{lease.CoordinatorID, expires}, func(rows pgx.Rows) error {
			return rows.Scan(&lease.Token)
		}, func(err *pgconn.PgError) error {
			return fmt.Errorf("LeaseAcquire: store lease of %s: %w", lease.CoordinatorID, err)
		})
	})
	if err != nil {
		return nil, err
	}
	if lease.Token == 0 {
		return nil, fmt.Errorf("LeaseAcquire: lease of %s: no token returned", lease.CoordinatorID)
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
	describe := fmt.Sprintf("LeaseRenew: lease %d of %s", renewed.Token, renewed.CoordinatorID)
	args := []any{renewed.CoordinatorID, renewed.Token, toNanos(renewed.Expires), toNanos(params.Now)}
	err := s.write(ctx, "LeaseRenew", func(p *pipe) {
		p.query(stmtLeaseRenew, args, func(pgx.Rows) error { return nil }, func(err *pgconn.PgError) error {
			return explainRefusal(describe, err)
		})
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
	rows, err := s.reader.Query(ctx, `SELECT coordinator_id, token, expires_at FROM leases
		WHERE expires_at > $1 ORDER BY coordinator_id`, toNanos(now))
	if err != nil {
		return nil, s.readErr(err, "list leases")
	}
	leases, err := collect(rows, func(row pgx.Row) (*store.Lease, error) {
		var (
			l       store.Lease
			expires int64
		)
		if err := row.Scan(&l.CoordinatorID, &l.Token, &expires); err != nil {
			return nil, err
		}
		l.Expires = fromNanos(expires)
		return &l, nil
	})
	if err != nil {
		return nil, s.readErr(err, "list leases")
	}
	return leases, nil
}

// TaskClaim implements store.Store. The lease check and the claim are two
// statements of one request, pipelined with the rest of the batch.
func (s *Store) TaskClaim(ctx context.Context, params *store.TaskClaimParams) ([]*store.Task, error) {
	if params == nil || params.Lease == nil {
		return nil, errors.New("TaskClaim: a lease is required")
	}
	l := params.Lease
	now := toNanos(params.Now)
	limit := int64(listLimit(params.Limit))
	describe := fmt.Sprintf("TaskClaim: lease %d of %s", l.Token, l.CoordinatorID)
	explain := func(err *pgconn.PgError) error { return explainRefusal(describe, err) }
	var out []*store.Task
	err := s.write(ctx, "TaskClaim", func(p *pipe) {
		out = nil
		p.query(stmtLeaseLive, []any{l.Token, now}, func(pgx.Rows) error { return nil }, explain)
		p.query(stmtTaskClaim, []any{l.Token, now, limit}, func(rows pgx.Rows) error {
			task, err := scanTask(rows)
			if err != nil {
				return err
			}
			out = append(out, task)
			return nil
		}, explain)
	})
	if err != nil {
		return nil, err
	}
	// RETURNING gives rows in no particular order.
	slices.SortFunc(out, func(a, b *store.Task) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
