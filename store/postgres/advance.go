package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

const (
	stmtFence       = "tasker_fence"
	stmtAdvanceStep = "tasker_advance_step"
	stmtInsertSteps = "tasker_insert_steps"
	stmtAdvanceTask = "tasker_advance_task"
	stmtTaskExists  = "tasker_task_exists"
	// stmtAdmissionRelease drops a task's admission entries as it ends.
	stmtAdmissionRelease = "tasker_admission_release"
)

// fenceSQL goes first in a TaskAdvance that carries a lease: it raises TK410
// (store.ErrLeaseLost) unless the task is owned by the lease's token and that
// lease is live at the advance's time, so a refused advance writes nothing.
//
// FOR SHARE makes the check hold until the batch commits. A claim by another
// coordinator changes owner_token, which needs a lock this one conflicts
// with: a claim already under way makes the fence wait for it and then
// re-check the new owner (refusing), and a claim that comes later skips the
// task (SKIP LOCKED) until this batch has committed. Without the lock, a
// claim committed between this check and the step updates would let a
// coordinator that just lost the task still write to it. The lease row is
// not locked: ownership only ever moves through the task row, and expiry is
// judged against the caller's time.
const fenceSQL = `SELECT tasker_lease_refused($1::text, $2::bigint, $3::bigint)
WHERE NOT EXISTS (
	SELECT 1 FROM tasks JOIN leases ON leases.token = tasks.owner_token
	WHERE tasks.id = $1::text AND tasks.owner_token = $2::bigint AND leases.expires_at > $3::bigint
	FOR SHARE OF tasks)`

// advanceStepSQL applies one step change and records its transition in one
// statement, if the step is still in the expected state and attempt; if not,
// tasker_step_refused raises TK409 (or TK404 for a step not in this task),
// which stops the pipeline at this request. It returns the transition's seq
// and the step's stored name, which the transition records even when the
// caller left StepName empty.
//
// The statement is fixed (optional fields are switched by parameters, not
// by editing the SQL), so it is prepared once per connection. A rerun ($18)
// clears results and error and counts a generation.
const advanceStepSQL = `WITH changed AS (
	UPDATE steps SET
		state = $5::text,
		attempts = $6::integer,
		updated_at = $7::bigint,
		next_retry_at = $8::bigint,
		max_attempts = CASE WHEN $9::integer > 0 THEN $9::integer ELSE max_attempts END,
		results = CASE WHEN $18::boolean THEN NULL ELSE COALESCE($10::text, results) END,
		error_message = CASE WHEN $5::text = '` + string(state.Complete) + `' OR $18::boolean THEN NULL
			WHEN $11::boolean THEN $12::text ELSE error_message END,
		error_class = CASE WHEN $5::text = '` + string(state.Complete) + `' OR $18::boolean THEN NULL
			WHEN $11::boolean THEN $13::text ELSE error_class END,
		error_retryable = CASE WHEN $5::text = '` + string(state.Complete) + `' OR $18::boolean THEN NULL
			WHEN $11::boolean THEN $14::boolean ELSE error_retryable END,
		generation = generation + CASE WHEN $18::boolean THEN 1 ELSE 0 END
	WHERE id = $2::text AND task_id = $1::text AND state = $3::text AND attempts = $4::integer
	RETURNING name
), drained AS (
	-- tasks.draining: a task in error with a step still running (see the
	-- migration 00022). The statement's snapshot still shows this step in
	-- its old state, so it is left out of the look at the others. A task
	-- not in error, the usual case, costs a look up of its row. Its state
	-- is read in a subquery, not filtered on in the UPDATE: a filter on
	-- state lets the planner read the task through a partial index whose
	-- WHERE that filter implies (tasks_finished), which has the id last in
	-- its key and so is read whole.
	UPDATE tasks SET draining = ($5::text = '` + string(state.InProgress) + `' OR EXISTS (SELECT 1 FROM steps s
			WHERE s.task_id = $1::text AND s.state = '` + string(state.InProgress) + `' AND s.id <> $2::text))
	WHERE id = $1::text AND ($3::text = '` + string(state.InProgress) + `' OR $5::text = '` + string(state.InProgress) + `')
		AND EXISTS (SELECT 1 FROM changed)
		AND (SELECT k.state FROM tasks k WHERE k.id = $1::text) = '` + string(state.Error) + `'
), recorded AS (
	INSERT INTO transitions (task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token)
	SELECT $1::text, $2::text, name, $3::text, $5::text, $7::bigint, $15::text, $6::integer, $16::text, $17::bigint
	FROM changed
	RETURNING seq, step_name
)
SELECT seq, step_name FROM recorded
UNION ALL
SELECT 0, tasker_step_refused($1::text, $2::text, $3::text, $4::integer)
WHERE NOT EXISTS (SELECT 1 FROM changed)`

// advanceTaskSQL is advanceStepSQL for the task itself. completed_at is
// kept once set: a completed task that is later cancelled still records when
// it completed. draining is worked out afresh: the steps this request
// changed came first, so they are seen as changed.
const advanceTaskSQL = `WITH changed AS (
	UPDATE tasks SET
		state = $3::text,
		updated_at = $4::bigint,
		completed_at = CASE WHEN $3::text = '` + string(state.Complete) + `' THEN $4::bigint ELSE completed_at END,
		draining = $3::text = '` + string(state.Error) + `' AND EXISTS (SELECT 1 FROM steps s
			WHERE s.task_id = $1::text AND s.state = '` + string(state.InProgress) + `')
	WHERE id = $1::text AND state = $2::text
	RETURNING id
), recorded AS (
	INSERT INTO transitions (task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token)
	SELECT id, NULL, '', $2::text, $3::text, $4::bigint, $5::text, 0, $6::text, $7::bigint
	FROM changed
	RETURNING seq
)
SELECT seq FROM recorded
UNION ALL
SELECT tasker_task_refused($1::text, $2::text)
WHERE NOT EXISTS (SELECT 1 FROM changed)`

// insertStepsSQL adds fresh steps to a task (a for_each step's instances),
// all in one statement however many there are.
const insertStepsSQL = `INSERT INTO steps (id, task_id, name, position, handler, depends_on, state, attempts,
	max_attempts, retryable, skippable, updated_at)
SELECT s.id, $1::text, s.name, s.position, s.handler, '{}', 'pending', 0, s.max_attempts, s.retryable, false, $2::bigint
FROM unnest($3::text[], $4::text[], $5::integer[], $6::text[], $7::integer[], $8::boolean[])
	AS s(id, name, position, handler, max_attempts, retryable)`

// taskExistsSQL refuses (TK404) an advance of a task that does not exist
// when there is nothing else in it to notice.
const taskExistsSQL = `SELECT tasker_task_refused($1::text, NULL)
WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE id = $1::text)`

// TaskAdvance implements store.Store. Step changes are applied and recorded
// in order, then the task change, if any: a task's transition follows from
// its steps'. Every UPDATE carries its precondition in the WHERE clause, so a
// stale caller matches no row and the whole request is rolled back to its
// savepoint. The task's UpdatedAt moves only with a task change, so step
// progress never rewrites the task row.
func (s *Store) TaskAdvance(ctx context.Context, params *store.TaskAdvanceParams) ([]*store.Transition, error) {
	if err := params.Validate(); err != nil {
		return nil, err
	}
	var out []*store.Transition
	err := s.write(ctx, "TaskAdvance", func(p *pipe) {
		out = queueAdvance(p, params)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// queueAdvance queues one statement per change and returns the transitions
// they will record; reading the results fills in Seq (and StepName).
func queueAdvance(p *pipe, params *store.TaskAdvanceParams) []*store.Transition {
	if p.grouping && groupable(params) {
		return p.groupAdvance(params)
	}
	at := toNanos(params.At)
	taskID := params.TaskID
	out := make([]*store.Transition, 0, len(params.Steps)+1)

	var token int64
	if l := params.Lease; l != nil {
		token = l.Token
		p.query(stmtFence, []any{taskID, l.Token, at}, func(pgx.Rows) error { return nil }, func(err *pgconn.PgError) error {
			return explainRefusal(fmt.Sprintf("task %s: lease %d of coordinator %s", taskID, l.Token, l.CoordinatorID), err)
		})
	}

	params.Refused = nil
	// admit decides an admission in the transaction, after the fence; a
	// refusal is recorded and the change it guards is not queued.
	admit := func(r *admission.Request, stepID string) bool {
		admitted := false
		p.interact(func(ctx context.Context, conn *pgx.Conn) error {
			tx := admissionTx{conn}
			if err := tx.lock(ctx); err != nil {
				return err
			}
			v, err := admission.Admit(ctx, tx, r, fromNanos(at), params.Aging)
			if err != nil {
				return fmt.Errorf("task %s: %w", taskID, err)
			}
			if admitted = v.Admitted; !admitted {
				params.Refused = append(params.Refused, store.Refusal{StepID: stepID, Verdict: *v})
			}
			return nil
		})
		return admitted
	}
	if params.Admit != nil && !admit(params.Admit, "") {
		return nil
	}

	if n := len(params.NewSteps); n > 0 {
		ids, names, handlers := make([]string, n), make([]string, n), make([]string, n)
		positions, maxAttempts := make([]int32, n), make([]int32, n)
		retryable := make([]bool, n)
		for k, st := range params.NewSteps {
			ids[k], names[k], handlers[k] = st.ID, st.Name, st.Handler
			positions[k], maxAttempts[k], retryable[k] = int32(st.Position), int32(st.MaxAttempts), st.Retryable
		}
		p.exec(stmtInsertSteps, taskID, at, ids, names, positions, handlers, maxAttempts, retryable)
	}
	for _, c := range params.Steps {
		if c.Admit != nil && !admit(c.Admit, c.StepID) {
			continue
		}
		tr := c.Transition(taskID, fromNanos(at), token)
		out = append(out, tr)
		var (
			hasError       = c.Error != nil
			message, class string
			errorRetryable bool
		)
		if hasError {
			message, class, errorRetryable = c.Error.Message, c.Error.Class, c.Error.Retryable
		}
		p.query(stmtAdvanceStep, []any{
			taskID, c.StepID, string(c.From), int32(c.ExpectAttempts), string(c.To), int32(c.Attempts), at,
			toNullNanos(c.NextRetryAt), int32(c.MaxAttempts), toNullJSON(c.Results),
			hasError, message, class, errorRetryable, c.Reason, toNullJSON(c.Metadata), token, c.Rerun,
		}, func(rows pgx.Rows) error {
			return rows.Scan(&tr.Seq, &tr.StepName)
		}, func(err *pgconn.PgError) error {
			return explainRefusal(fmt.Sprintf("step %s (%s) of task %s %s→%s", c.StepName, c.StepID, taskID, c.From, c.To), err)
		})
		if c.Signal != nil {
			queueConsume(p, taskID, at, c)
		}
	}

	if params.Release {
		p.exec(stmtAdmissionRelease, taskID)
	}
	if c := params.Task; c != nil {
		tr := c.Transition(taskID, fromNanos(at), token)
		out = append(out, tr)
		p.query(stmtAdvanceTask, []any{taskID, string(c.From), string(c.To), at, c.Reason, toNullJSON(c.Metadata), token},
			func(rows pgx.Rows) error {
				return rows.Scan(&tr.Seq)
			}, func(err *pgconn.PgError) error {
				return explainRefusal(fmt.Sprintf("task %s %s→%s", taskID, c.From, c.To), err)
			})
	} else if len(params.Steps) == 0 {
		// Nothing to change, but an unknown task is still an error.
		p.query(stmtTaskExists, []any{taskID}, func(pgx.Rows) error { return nil }, func(err *pgconn.PgError) error {
			return explainRefusal("task "+taskID, err)
		})
	}
	return out
}

// explainRefusal turns the server refusing a change into the request's
// error: ErrConflict or ErrNotFound with the server's account of the current
// state, or the server's error itself for anything else.
func explainRefusal(describe string, err *pgconn.PgError) error {
	if sentinel, ok := refusal(err); ok {
		return fmt.Errorf("%s: %s: %w", describe, err.Message, sentinel)
	}
	return fmt.Errorf("%s: %w", describe, err)
}
