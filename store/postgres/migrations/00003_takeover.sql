-- Takeover between coordinators and an auditable fence, as in the SQLite
-- driver's 00003.
--
-- leases.address: where the lease holder serves its peers, so a
-- coordinator refused a task can tell the caller who owns it.
-- transitions.lease_token: the lease that wrote each transition (0: none).
-- steps_in_progress: the steps still running, however few, so a claim can
-- find a task that failed while a step was in flight without reading
-- every finished task. Queries must repeat its WHERE word for word.
--
-- Constant defaults: PostgreSQL 11+ adds these columns without rewriting
-- the tables. The index is built inside the migration's transaction, which
-- holds writes to steps for as long as the build takes (it reads only the
-- steps table once).

-- +goose Up
ALTER TABLE leases ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE transitions ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
CREATE INDEX steps_in_progress ON steps (task_id) WHERE state = 'in_progress';

-- tasker_take_refused says why TaskTake took nothing, once the take itself
-- matched no row: SQLSTATE TK404 for no such task, TK423 when another live
-- lease owns it (DETAIL carries that lease as JSON, which the driver turns
-- into a store.OwnedError), and TK409 if the owner changed under the take
-- (the caller may try again). Like the other refusal functions it runs only
-- on the refusal path, and being VOLATILE plpgsql it reads the rows as
-- committed now, not as the calling statement's snapshot saw them: a
-- coordinator that took the task while this statement waited for its row
-- is named, although the statement's snapshot predates its lease.

-- +goose StatementBegin
CREATE FUNCTION tasker_take_refused(p_task_id TEXT, p_token BIGINT, p_at BIGINT)
RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cur_owner BIGINT;
    owner     leases%ROWTYPE;
BEGIN
    SELECT owner_token INTO cur_owner FROM tasks WHERE id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such task' USING ERRCODE = 'TK404';
    END IF;
    IF cur_owner = p_token THEN
        RETURN cur_owner;
    END IF;
    SELECT * INTO owner FROM leases WHERE token = cur_owner AND expires_at > p_at;
    IF FOUND THEN
        RAISE EXCEPTION 'task is owned by lease % of coordinator %', owner.token, owner.coordinator_id
            USING ERRCODE = 'TK423',
                  DETAIL = json_build_object('coordinator_id', owner.coordinator_id, 'token', owner.token,
                                             'expires_at', owner.expires_at, 'address', owner.address)::text;
    END IF;
    RAISE EXCEPTION 'owner of the task changed during the take (now lease %)', cur_owner USING ERRCODE = 'TK409';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tasker_take_refused(TEXT, BIGINT, BIGINT);
DROP INDEX steps_in_progress;
ALTER TABLE transitions DROP COLUMN lease_token;
ALTER TABLE leases DROP COLUMN address;
