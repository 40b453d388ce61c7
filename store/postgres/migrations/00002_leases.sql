-- Coordinator leases: each coordinator owns tasks under a lease with a
-- unique, ever-growing token. A task's owner_token names the lease that owns
-- it (0: none); a write carrying another token, or the token of a lease that
-- is no longer live, is refused (fencing). Times are unix nanoseconds, as in
-- 00001.

-- +goose Up
-- A sequence rather than a counter row: nextval never waits for another
-- coordinator's open transaction, and a value burnt by a rolled-back batch
-- only leaves a gap, which tokens may have.
CREATE SEQUENCE lease_tokens AS BIGINT;

CREATE TABLE leases (
    coordinator_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    token          BIGINT           NOT NULL UNIQUE,
    expires_at     BIGINT           NOT NULL
);

-- A constant default: PostgreSQL 11+ adds the column without rewriting the
-- table.
ALTER TABLE tasks ADD COLUMN owner_token BIGINT NOT NULL DEFAULT 0;

-- tasker_lease_refused raises TK410 (mapped to store.ErrLeaseLost) with the
-- reason a lease check failed: the task is gone or owned by another lease,
-- or the lease was replaced or expired at p_at. p_task_id is NULL when only
-- the lease itself is checked. Like the functions of 00001 it runs only on
-- the refusal path, inside the refused statement, so the pipeline stops
-- there.

-- +goose StatementBegin
CREATE FUNCTION tasker_lease_refused(p_task_id TEXT, p_token BIGINT, p_at BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    cur_owner   BIGINT;
    cur_expires BIGINT;
BEGIN
    IF p_task_id IS NOT NULL THEN
        SELECT owner_token INTO cur_owner FROM tasks WHERE id = p_task_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no such task' USING ERRCODE = 'TK410';
        END IF;
        IF cur_owner <> p_token THEN
            RAISE EXCEPTION 'task is owned by lease %, not %', cur_owner, p_token USING ERRCODE = 'TK410';
        END IF;
    END IF;
    SELECT expires_at INTO cur_expires FROM leases WHERE token = p_token;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease % was replaced', p_token USING ERRCODE = 'TK410';
    END IF;
    IF cur_expires <= p_at THEN
        RAISE EXCEPTION 'lease % expired at % (unix ns), not after %', p_token, cur_expires, p_at
            USING ERRCODE = 'TK410';
    END IF;
    -- Live and owning: the lease belongs to another coordinator id than the
    -- request named (LeaseRenew), or changed while the statement ran.
    RAISE EXCEPTION 'lease % is not the one the request names, or changed under it', p_token
        USING ERRCODE = 'TK410';
END
$$;
-- +goose StatementEnd

-- tasker_lease_live tells whether a lease is live at p_at, as committed
-- when it is called, not when the calling statement began: being VOLATILE
-- (and plpgsql, so never inlined), it takes a fresh snapshot each time. The
-- claim statement needs that when it locks a task another coordinator
-- claimed after the statement began: that coordinator's lease may be newer
-- than the statement's snapshot, which would take it for an unowned task.
-- The high COST makes the planner test it after the cheap conditions, so it
-- runs only for tasks that look claimable.

-- +goose StatementBegin
CREATE FUNCTION tasker_lease_live(p_token BIGINT, p_at BIGINT)
RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE COST 1000 AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM leases WHERE token = p_token AND expires_at > p_at);
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tasker_lease_live(BIGINT, BIGINT);
DROP FUNCTION tasker_lease_refused(TEXT, BIGINT, BIGINT);
ALTER TABLE tasks DROP COLUMN owner_token;
DROP TABLE leases;
DROP SEQUENCE lease_tokens;
