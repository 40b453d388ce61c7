package postgres

import (
	"context"
	"encoding/json"
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
	stmtTaskTake     = "tasker_task_take"
)

// leaseAcquireSQL starts or replaces a coordinator's lease. The token comes
// from a sequence, so it is larger than any token handed out before, by
// this or any other coordinator sharing the database.
const leaseAcquireSQL = `INSERT INTO leases (coordinator_id, token, expires_at, address)
VALUES ($1::text, nextval('lease_tokens'), $2::bigint, $3::text)
ON CONFLICT (coordinator_id) DO UPDATE
SET token = excluded.token, expires_at = excluded.expires_at, address = excluded.address
RETURNING token`

// leaseRenewSQL extends the lease if it is still the coordinator's and live
// at $4, and returns its stored address; if not, tasker_lease_refused
// raises TK410 and says why.
const leaseRenewSQL = `WITH renewed AS (
	UPDATE leases SET expires_at = $3::bigint
	WHERE coordinator_id = $1::text AND token = $2::bigint AND expires_at > $4::bigint
	RETURNING address
)
SELECT address FROM renewed
UNION ALL
SELECT tasker_lease_refused(NULL, $2::bigint, $4::bigint)::text
WHERE NOT EXISTS (SELECT 1 FROM renewed)`

// leaseLiveSQL refuses (TK410) a claim by a lease that is not live at $2. It
// is queued just before taskClaimSQL in the same request, so a dead lease
// stops the pipeline before claiming anything.
const leaseLiveSQL = `SELECT tasker_lease_refused(NULL, $1::bigint, $2::bigint)
WHERE NOT EXISTS (SELECT 1 FROM leases WHERE token = $1::bigint AND expires_at > $2::bigint)`

// taskClaimSQL gives the lease $1 the oldest tasks with work whose owner is
// not live at $2 (token 0, expired, or replaced, which leaves the token in
// no lease row). A task has work when it is pending or in_progress, or in
// error with a step still in_progress (draining, see the migration 00022).
// Candidates come from two partial indexes that hold only work, merged in
// id order: tasks_active_id and tasks_draining (each filter repeats its
// index's WHERE word for word, so the planner can prove the index covers
// it). Finished tasks are never read unless a step of theirs is running.
// The flag says which index a candidate came from, so a task is a
// candidate once: an active task through the first, an errored one
// through the second.
//
// SKIP LOCKED makes concurrent claimers split the tasks instead of queueing
// behind each other, and skips tasks a fenced advance of their current
// owner holds (see fenceSQL), or a take holds, until that commits.
//
// The NOT IN reads the leases as of the statement's start, which is cheap
// but not enough: a task another coordinator claimed after that, under a
// lease acquired after that, is locked here and re-checked against the
// same old view of leases, where its new owner does not exist. So a task
// that passes is checked once more by tasker_lease_live, which reads the
// leases as they are now (see 00002_leases.sql).
const taskClaimSQL = `WITH picked AS MATERIALIZED (
	SELECT t.id FROM (
		SELECT id, false FROM tasks WHERE state IN ('` + string(state.Pending) + `', '` + string(state.InProgress) + `')
		UNION ALL
		SELECT id, true FROM tasks WHERE state = '` + string(state.Error) + `' AND draining
	) AS work (id, running_step) JOIN tasks AS t ON t.id = work.id
	WHERE t.state IN ('` + string(state.Pending) + `', '` + string(state.InProgress) + `', '` + string(state.Error) + `')
		AND (t.state = '` + string(state.Error) + `') = work.running_step
		AND t.owner_token NOT IN (SELECT token FROM leases WHERE expires_at > $2::bigint)
		AND NOT tasker_lease_live(t.owner_token, $2::bigint)
	ORDER BY work.id
	LIMIT $3::bigint
	FOR NO KEY UPDATE OF t SKIP LOCKED
)
UPDATE tasks SET owner_token = $1::bigint
WHERE id IN (SELECT id FROM picked)
RETURNING ` + taskColumns

// LeaseAcquire implements store.Store.
func (s *Store) LeaseAcquire(ctx context.Context, params *store.LeaseAcquireParams) (*store.Lease, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	lease := &store.Lease{CoordinatorID: params.CoordinatorID, Expires: params.Now.Add(params.TTL), Address: params.Address}
	expires := toNanos(lease.Expires)
	err := s.write(ctx, "LeaseAcquire", func(p *pipe) {
		lease.Token = 0
		p.query(stmtLeaseAcquire, []any{lease.CoordinatorID, expires, lease.Address}, func(rows pgx.Rows) error {
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
	if err := params.Validate(); err != nil {
		return nil, err
	}
	renewed := *params.Lease
	renewed.Expires = params.Now.Add(params.TTL)
	describe := fmt.Sprintf("LeaseRenew: lease %d of %s", renewed.Token, renewed.CoordinatorID)
	args := []any{renewed.CoordinatorID, renewed.Token, toNanos(renewed.Expires), toNanos(params.Now)}
	err := s.write(ctx, "LeaseRenew", func(p *pipe) {
		p.query(stmtLeaseRenew, args, func(rows pgx.Rows) error {
			return rows.Scan(&renewed.Address)
		}, func(err *pgconn.PgError) error {
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
	rows, err := s.reader.Query(ctx, `SELECT `+leaseColumns+` FROM leases
		WHERE expires_at > $1 ORDER BY coordinator_id`, toNanos(now))
	if err != nil {
		return nil, s.readErr(err, "list leases")
	}
	leases, err := collect(rows, scanLease)
	if err != nil {
		return nil, s.readErr(err, "list leases")
	}
	return leases, nil
}

// TaskClaim implements store.Store. The lease check and the claim are two
// statements of one request, pipelined with the rest of the batch.
func (s *Store) TaskClaim(ctx context.Context, params *store.TaskClaimParams) ([]*store.Task, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	var res *claimResult
	err := s.write(ctx, "TaskClaim", func(p *pipe) {
		res = queueClaim(p, params)
	})
	if err != nil {
		return nil, err
	}
	// RETURNING gives rows in no particular order.
	slices.SortFunc(res.tasks, func(a, b *store.Task) int { return strings.Compare(a.ID, b.ID) })
	return res.tasks, nil
}

// claimResult is what a queued claim took.
type claimResult struct{ tasks []*store.Task }

func queueClaim(p *pipe, params *store.TaskClaimParams) *claimResult {
	l := params.Lease
	now := toNanos(params.Now)
	describe := fmt.Sprintf("TaskClaim: lease %d of %s", l.Token, l.CoordinatorID)
	explain := func(err *pgconn.PgError) error { return explainRefusal(describe, err) }
	res := &claimResult{}
	p.query(stmtLeaseLive, []any{l.Token, now}, func(pgx.Rows) error { return nil }, explain)
	p.query(stmtTaskClaim, []any{l.Token, now, int64(listLimit(params.Limit))}, func(rows pgx.Rows) error {
		task, err := scanTask(rows)
		if err != nil {
			return err
		}
		res.tasks = append(res.tasks, task)
		return nil
	}, explain)
	return res
}

// taskTakeSQL makes lease $1 the owner of task $2 if the task's owner is
// not live at $3, and returns the task as stored after the take; if the
// lease owns it already, it returns it unchanged. Otherwise
// tasker_take_refused raises: TK404 for no such task, TK423 naming the
// live owner, TK409 if the owner changed while the statement ran.
//
// The row lock is what makes it safe beside the other writers of
// owner_token. FOR NO KEY UPDATE waits for a fenced advance of the current
// owner (fenceSQL's FOR SHARE) to commit, so the owner's last write lands
// before the task changes hands, and makes a later fence wait and then
// refuse. A claim holding the row makes the take wait; a take holding it
// makes claims skip it (SKIP LOCKED). After waiting, PostgreSQL re-checks
// the WHERE on the row as the other transaction left it, and
// tasker_lease_live, which reads leases as committed now rather than as of
// the statement's start, sees the lease of a coordinator that claimed or
// took the task meanwhile: so of two takes at once, the second finds the
// first's owner live and is refused with its name. The owner is judged
// only by the function, never by the statement's snapshot, for the same
// reason.
//
// A task this lease owns already matches no row in target and is read by
// the second branch; so is a task it may not take, whose owner column then
// calls the refusal function.
const taskTakeSQL = `WITH target AS MATERIALIZED (
	SELECT id FROM tasks
	WHERE id = $2::text AND owner_token <> $1::bigint AND NOT tasker_lease_live(owner_token, $3::bigint)
	FOR NO KEY UPDATE
), taken AS (
	UPDATE tasks SET owner_token = $1::bigint
	WHERE id IN (SELECT id FROM target)
	RETURNING ` + taskColumns + `
)
SELECT ` + taskColumns + ` FROM taken
UNION ALL
SELECT t.id, t.namespace, t.name, t.version, t.state, t.context, t.identity_key, t.bypass_steps,
	t.created_at, t.updated_at, t.completed_at,
	CASE WHEN t.owner_token = $1::bigint THEN t.owner_token ELSE tasker_take_refused($2::text, $1::bigint, $3::bigint) END,
	t.run_at, t.priority, t.debounce_key, t.parent_task_id, t.parent_step_id
FROM (SELECT $2::text AS id) AS want LEFT JOIN tasks AS t ON t.id = want.id
WHERE NOT EXISTS (SELECT 1 FROM taken)`

// TaskTake implements store.Store. Like TaskClaim, the lease check and the
// take are two statements of one request.
func (s *Store) TaskTake(ctx context.Context, params *store.TaskTakeParams) (*store.Task, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	var res *takeResult
	err := s.write(ctx, "TaskTake", func(p *pipe) {
		res = queueTake(p, params)
	})
	if err != nil {
		return nil, err
	}
	if res.task == nil {
		return nil, fmt.Errorf("TaskTake: task %s: no row returned", params.TaskID)
	}
	return res.task, nil
}

// takeResult is the task as a queued take left it.
type takeResult struct{ task *store.Task }

func queueTake(p *pipe, params *store.TaskTakeParams) *takeResult {
	l := params.Lease
	now := toNanos(params.Now)
	describe := fmt.Sprintf("TaskTake: task %s, lease %d of %s", params.TaskID, l.Token, l.CoordinatorID)
	explain := func(err *pgconn.PgError) error {
		if owned := ownedError(params.TaskID, err); owned != nil {
			return owned
		}
		return explainRefusal(describe, err)
	}
	res := &takeResult{}
	p.query(stmtLeaseLive, []any{l.Token, now}, func(pgx.Rows) error { return nil }, explain)
	p.query(stmtTaskTake, []any{l.Token, params.TaskID, now}, func(rows pgx.Rows) error {
		var err error
		res.task, err = scanTask(rows)
		return err
	}, explain)
	return res
}

// ownedError turns tasker_take_refused's TK423 into the store's error,
// naming the owner from the JSON in its DETAIL; nil for any other error.
func ownedError(taskID string, err *pgconn.PgError) error {
	if err.Code != "TK423" {
		return nil
	}
	var owner struct {
		CoordinatorID string `json:"coordinator_id"`
		Token         int64  `json:"token"`
		ExpiresAt     int64  `json:"expires_at"`
		Address       string `json:"address"`
	}
	if jsonErr := json.Unmarshal([]byte(err.Detail), &owner); jsonErr != nil {
		return fmt.Errorf("task %s: %s (detail %q unreadable: %v): %w", taskID, err.Message, err.Detail, jsonErr, store.ErrOwned)
	}
	return &store.OwnedError{TaskID: taskID, Owner: store.Lease{
		CoordinatorID: owner.CoordinatorID, Token: owner.Token, Expires: fromNanos(owner.ExpiresAt), Address: owner.Address,
	}}
}
