package postgres

import (
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// A batch's first run (the one without savepoints, which nearly every batch
// commits whole) does not send a statement per change: consecutive plain
// TaskAdvance requests are gathered into an advanceGroup, which sends one
// statement for all their fences, one for all their step changes, one for
// their admission releases and one for their task changes. The writer's
// backend is the serial path of a PostgreSQL coordinator, and most of its
// time per statement is not the rows but the statement: starting and ending
// the executor for a CTE of three modifications, and re-reading the tables'
// CHECK constraints, which PostgreSQL does for each statement that writes.
//
// A group needs nothing to tell which request a refusal belongs to: a
// refused group statement fails the first run as any refusal does, and the
// run with savepoints that follows queues each request on its own, as
// queueAdvance always did, so refusals are explained and confined exactly as
// before. Within a group, each request's changes keep their order (fences,
// then steps in order, then the task); across requests they are reordered
// (every request's steps before any request's task), which is why a group
// takes one request per task and stops at anything that is not a plain
// advance: no two of its requests touch the same row.

const (
	stmtGroupIndexes = "tasker_group_indexes"
	stmtGroupAnyScan = "tasker_group_any_scan"
	stmtGroupFence   = "tasker_group_fence"
	stmtGroupSteps   = "tasker_group_steps"
	stmtGroupTasks   = "tasker_group_tasks"
	stmtGroupFree    = "tasker_group_release"
)

// A group's statements join their input to tasks and steps, and the writer
// runs them with generic plans (see Open), made at their first run and
// again whenever the tables' statistics change. On tables that are still
// small, as on a new database, reading the whole table looks cheaper than
// an index lookup per input row, and such a plan, once made, stays while
// the table grows: measured, a group's task changes went from 1.2 to 18 ms
// a statement as tasks grew to 20,000 rows. So a group's statements run,
// and are planned, with sequential scans off (and, for the whole writer
// session, hash and merge joins), which leaves index lookups by key the
// only plan. SET LOCAL ends with the transaction, or here with the group.
const (
	groupIndexesSQL = `SET LOCAL enable_seqscan = off`
	groupAnyScanSQL = `SET LOCAL enable_seqscan TO DEFAULT`
)

// groupFenceSQL is fenceSQL for many tasks, each with its own lease and time.
const groupFenceSQL = `SELECT tasker_lease_refused(f.task_id, f.token, f.at)
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS f(task_id, token, at)
WHERE NOT EXISTS (
	SELECT 1 FROM tasks JOIN leases ON leases.token = tasks.owner_token
	WHERE tasks.id = f.task_id AND tasks.owner_token = f.token AND leases.expires_at > f.at
	FOR SHARE OF tasks)`

// groupStepsSQL is advanceStepSQL for many step changes, each a row of the
// arrays in the same parameter order. The draining flag of a task in error
// comes out as advanceStepSQL's would after the last of its changes: some
// step is in progress, counting the changed steps in their new states. The
// transitions are inserted in input order, so their seqs follow it. The
// look for refused rows runs only when fewer rows changed than were given.
const groupStepsSQL = `WITH input AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::integer[], $7::bigint[],
		$8::bigint[], $9::integer[], $10::text[], $11::boolean[], $12::text[], $13::text[], $14::boolean[], $15::text[],
		$16::text[], $17::bigint[], $18::boolean[])
	WITH ORDINALITY AS i(task_id, step_id, from_state, expect_attempts, to_state, attempts, at,
		next_retry_at, max_attempts, results, has_error, message, class, error_retryable, reason,
		metadata, token, rerun, ord)
), changed AS (
	UPDATE steps SET
		state = i.to_state,
		attempts = i.attempts,
		updated_at = i.at,
		next_retry_at = i.next_retry_at,
		max_attempts = CASE WHEN i.max_attempts > 0 THEN i.max_attempts ELSE steps.max_attempts END,
		results = CASE WHEN i.rerun THEN NULL ELSE COALESCE(i.results, steps.results) END,
		error_message = CASE WHEN i.to_state = '` + string(state.Complete) + `' OR i.rerun THEN NULL
			WHEN i.has_error THEN i.message ELSE steps.error_message END,
		error_class = CASE WHEN i.to_state = '` + string(state.Complete) + `' OR i.rerun THEN NULL
			WHEN i.has_error THEN i.class ELSE steps.error_class END,
		error_retryable = CASE WHEN i.to_state = '` + string(state.Complete) + `' OR i.rerun THEN NULL
			WHEN i.has_error THEN i.error_retryable ELSE steps.error_retryable END,
		generation = steps.generation + CASE WHEN i.rerun THEN 1 ELSE 0 END
	FROM input i
	WHERE steps.id = i.step_id AND steps.task_id = i.task_id AND steps.state = i.from_state
		AND steps.attempts = i.expect_attempts
	RETURNING i.ord, i.task_id, i.step_id, i.from_state, i.to_state, i.at, i.reason, i.attempts, i.metadata, i.token,
		steps.name
), drained AS (
	-- See advanceStepSQL; the task's state is read in a subquery for the
	-- same reason.
	UPDATE tasks t SET draining = (
		EXISTS (SELECT 1 FROM changed c WHERE c.task_id = t.id AND c.to_state = '` + string(state.InProgress) + `')
		OR EXISTS (SELECT 1 FROM steps s WHERE s.task_id = t.id AND s.state = '` + string(state.InProgress) + `'
			AND NOT EXISTS (SELECT 1 FROM changed c WHERE c.step_id = s.id)))
	WHERE t.id IN (SELECT c.task_id FROM changed c
			WHERE c.from_state = '` + string(state.InProgress) + `' OR c.to_state = '` + string(state.InProgress) + `')
		AND (SELECT k.state FROM tasks k WHERE k.id = t.id) = '` + string(state.Error) + `'
), recorded AS (
	INSERT INTO transitions (task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token)
	SELECT task_id, step_id, name, from_state, to_state, at, reason, attempts, metadata, token
	FROM changed ORDER BY ord
	RETURNING seq, step_id, step_name
)
SELECT seq, step_id, step_name FROM recorded
UNION ALL
SELECT 0, i.step_id, tasker_step_refused(i.task_id, i.step_id, i.from_state, i.expect_attempts)
FROM input i
WHERE (SELECT count(*) FROM changed) < cardinality($2::text[])
	AND NOT EXISTS (SELECT 1 FROM changed c WHERE c.ord = i.ord)`

// groupTasksSQL is advanceTaskSQL for many tasks.
const groupTasksSQL = `WITH input AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[])
	WITH ORDINALITY AS i(task_id, from_state, to_state, at, reason, metadata, token, ord)
), changed AS (
	UPDATE tasks SET
		state = i.to_state,
		updated_at = i.at,
		completed_at = CASE WHEN i.to_state = '` + string(state.Complete) + `' THEN i.at ELSE tasks.completed_at END,
		draining = i.to_state = '` + string(state.Error) + `' AND EXISTS (SELECT 1 FROM steps s
			WHERE s.task_id = tasks.id AND s.state = '` + string(state.InProgress) + `')
	FROM input i
	WHERE tasks.id = i.task_id AND tasks.state = i.from_state
	RETURNING i.ord, i.task_id, i.from_state, i.to_state, i.at, i.reason, i.metadata, i.token
), recorded AS (
	INSERT INTO transitions (task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token)
	SELECT task_id, NULL, '', from_state, to_state, at, reason, 0, metadata, token
	FROM changed ORDER BY ord
	RETURNING seq, task_id
)
SELECT seq, task_id FROM recorded
UNION ALL
SELECT tasker_task_refused(i.task_id, i.from_state), i.task_id
FROM input i
WHERE (SELECT count(*) FROM changed) < cardinality($1::text[])
	AND NOT EXISTS (SELECT 1 FROM changed c WHERE c.ord = i.ord)`

// groupReleaseSQL drops the admission entries of tasks that end.
const groupReleaseSQL = `DELETE FROM admission_entries WHERE task_id = ANY($1::text[])`

// advanceGroup gathers plain TaskAdvance requests of one pipeline, to be
// queued as one statement per kind of change. Its arrays are the columns of
// those statements' input.
type advanceGroup struct {
	first int // the first request in the group, which its statements are queued as
	tasks map[string]bool

	fenceTask  []string
	fenceToken []int64
	fenceAt    []int64

	stepTask, stepID, stepFrom, stepTo []string
	stepExpect, stepAttempts           []int32
	stepAt                             []int64
	stepRetryAt                        []*int64
	stepMaxAttempts                    []int32
	stepResults                        []*string
	stepHasError                       []bool
	stepMessage, stepClass             []string
	stepErrRetryable                   []bool
	stepReason                         []string
	stepMetadata                       []*string
	stepToken                          []int64
	stepRerun                          []bool
	stepOut                            map[string]*store.Transition

	release []string

	taskID, taskFrom, taskTo, taskReason []string
	taskAt, taskToken                    []int64
	taskMetadata                         []*string
	taskOut                              map[string]*store.Transition
}

// groupable reports whether params is a plain advance: one a group can take
// as a whole, with no admission to decide in the transaction, no steps to
// insert, no signal to consume, something to change, and each step changed
// once.
func groupable(params *store.TaskAdvanceParams) bool {
	if params.Admit != nil || len(params.NewSteps) > 0 || (params.Task == nil && len(params.Steps) == 0) {
		return false
	}
	for i, c := range params.Steps {
		if c.Admit != nil || c.Signal != nil {
			return false
		}
		for _, d := range params.Steps[:i] {
			if d.StepID == c.StepID {
				return false
			}
		}
	}
	return true
}

// groupAdvance adds params, which groupable accepts, to p's group and
// returns the transitions it will record, as queueAdvance does. A group
// that already holds a request for the task is queued first, and params
// starts a new one.
func (p *pipe) groupAdvance(params *store.TaskAdvanceParams) []*store.Transition {
	taskID := params.TaskID
	if (p.group != nil && p.group.tasks[taskID]) || (p.creates != nil && p.creates.out[taskID] != nil) {
		p.flushGroup()
	}
	g := p.group
	if g == nil {
		g = &advanceGroup{first: p.req, tasks: map[string]bool{}}
		p.group = g
	}
	g.tasks[taskID] = true
	at := toNanos(params.At)
	var token int64
	if l := params.Lease; l != nil {
		token = l.Token
		g.fenceTask = append(g.fenceTask, taskID)
		g.fenceToken = append(g.fenceToken, token)
		g.fenceAt = append(g.fenceAt, at)
	}
	params.Refused = nil
	out := make([]*store.Transition, 0, len(params.Steps)+1)
	when := fromNanos(at)
	for _, c := range params.Steps {
		tr := c.Transition(taskID, when, token)
		out = append(out, tr)
		if g.stepOut == nil {
			g.stepOut = map[string]*store.Transition{}
		}
		g.stepOut[c.StepID] = tr
		var message, class string
		var errRetryable bool
		if c.Error != nil {
			message, class, errRetryable = c.Error.Message, c.Error.Class, c.Error.Retryable
		}
		g.stepTask = append(g.stepTask, taskID)
		g.stepID = append(g.stepID, c.StepID)
		g.stepFrom = append(g.stepFrom, string(c.From))
		g.stepExpect = append(g.stepExpect, int32(c.ExpectAttempts))
		g.stepTo = append(g.stepTo, string(c.To))
		g.stepAttempts = append(g.stepAttempts, int32(c.Attempts))
		g.stepAt = append(g.stepAt, at)
		g.stepRetryAt = append(g.stepRetryAt, toNullNanos(c.NextRetryAt))
		g.stepMaxAttempts = append(g.stepMaxAttempts, int32(c.MaxAttempts))
		g.stepResults = append(g.stepResults, toNullJSON(c.Results))
		g.stepHasError = append(g.stepHasError, c.Error != nil)
		g.stepMessage = append(g.stepMessage, message)
		g.stepClass = append(g.stepClass, class)
		g.stepErrRetryable = append(g.stepErrRetryable, errRetryable)
		g.stepReason = append(g.stepReason, c.Reason)
		g.stepMetadata = append(g.stepMetadata, toNullJSON(c.Metadata))
		g.stepToken = append(g.stepToken, token)
		g.stepRerun = append(g.stepRerun, c.Rerun)
	}
	if params.Release {
		g.release = append(g.release, taskID)
	}
	if c := params.Task; c != nil {
		tr := c.Transition(taskID, when, token)
		out = append(out, tr)
		if g.taskOut == nil {
			g.taskOut = map[string]*store.Transition{}
		}
		g.taskOut[taskID] = tr
		g.taskID = append(g.taskID, taskID)
		g.taskFrom = append(g.taskFrom, string(c.From))
		g.taskTo = append(g.taskTo, string(c.To))
		g.taskAt = append(g.taskAt, at)
		g.taskReason = append(g.taskReason, c.Reason)
		g.taskMetadata = append(g.taskMetadata, toNullJSON(c.Metadata))
		g.taskToken = append(g.taskToken, token)
	}
	return out
}

// flushGroup queues the statements of the pipe's groups, each as its
// first request, and empties them: creates first, so that nothing in the
// advance group could need a task they insert (groupCreate and groupAdvance
// queue the groups before a request that would). Anything queued after
// comes after both.
func (p *pipe) flushGroup() {
	g, c := p.group, p.creates
	if g == nil && c == nil {
		return
	}
	p.group, p.creates = nil, nil
	req := p.req
	defer func() { p.req = req }()
	if c != nil {
		p.req = c.first
	} else {
		p.req = g.first
	}
	p.addRaw(stmtGroupIndexes, nil, execResult, nil)
	if c != nil {
		c.queue(p)
	}
	if g != nil {
		p.req = g.first
		g.queue(p)
	}
	p.addRaw(stmtGroupAnyScan, nil, execResult, nil)
}

// queue queues the group's statements; p.req is the group's first request.
func (g *advanceGroup) queue(p *pipe) {
	if len(g.fenceTask) > 0 {
		p.addRaw(stmtGroupFence, []any{g.fenceTask, g.fenceToken, g.fenceAt}, readRows(func(pgx.Rows) error { return nil }), nil)
	}
	if len(g.stepID) > 0 {
		p.addRaw(stmtGroupSteps, []any{
			g.stepTask, g.stepID, g.stepFrom, g.stepExpect, g.stepTo, g.stepAttempts, g.stepAt,
			g.stepRetryAt, g.stepMaxAttempts, g.stepResults, g.stepHasError, g.stepMessage, g.stepClass,
			g.stepErrRetryable, g.stepReason, g.stepMetadata, g.stepToken, g.stepRerun,
		}, readRows(func(rows pgx.Rows) error {
			var (
				seq          int64
				stepID, name string
			)
			if err := rows.Scan(&seq, &stepID, &name); err != nil {
				return err
			}
			if tr := g.stepOut[stepID]; tr != nil {
				tr.Seq, tr.StepName = seq, name
			}
			return nil
		}), nil)
	}
	if len(g.release) > 0 {
		p.addRaw(stmtGroupFree, []any{g.release}, execResult, nil)
	}
	if len(g.taskID) > 0 {
		p.addRaw(stmtGroupTasks, []any{g.taskID, g.taskFrom, g.taskTo, g.taskAt, g.taskReason, g.taskMetadata, g.taskToken},
			readRows(func(rows pgx.Rows) error {
				var (
					seq    int64
					taskID string
				)
				if err := rows.Scan(&seq, &taskID); err != nil {
					return err
				}
				if tr := g.taskOut[taskID]; tr != nil {
					tr.Seq = seq
				}
				return nil
			}), nil)
	}
}
