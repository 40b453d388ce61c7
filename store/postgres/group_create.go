package postgres

import (
	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// Plain creates gather in a batch's first run as plain advances do (see
// advanceGroup): one statement inserts all their tasks, steps and initial
// transitions. A create was the writer's most expensive request (measured
// with the server's statement log, 228 µs of its backend's time each, most
// of it the statement rather than its rows).
//
// The group inserts without ON CONFLICT: a task whose ID or identity key is
// taken fails the whole statement with a unique violation, the first run
// with it, and the run with savepoints queues each create on its own, where
// createTaskSQL answers with the stored task as always. So a conflict costs
// that batch a second run and changes no answer.

const stmtGroupCreate = "tasker_group_create"

// groupCreateSQL is createTaskSQL for many tasks, none debounced or in
// error. Tasks are rows of $1 to $17, steps of $19 to $36 (each naming its
// task), transitions of $38 to $47; bypass_steps and depends_on are slices
// of the flattened $18 and $37, as in createTaskSQL. Transitions are
// inserted in input order, so their seqs follow it.
const groupCreateSQL = `WITH input AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::integer[], $9::integer[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
		$15::integer[], $16::text[], $17::text[])
	WITH ORDINALITY AS t(id, namespace, name, version, state, context, identity_key, bypass_from, bypass_to,
		created_at, updated_at, completed_at, owner_token, run_at, priority, parent_task_id, parent_step_id, ord)
), task AS (
	INSERT INTO tasks (` + taskColumns + `, debounce_open, draining)
	SELECT id, namespace, name, version, state, context, identity_key, ($18::text[])[bypass_from:bypass_to],
		created_at, updated_at, completed_at, owner_token, run_at, priority, NULL, parent_task_id, parent_step_id,
		false, false
	FROM input ORDER BY ord
	RETURNING ` + taskColumns + `
), new_steps AS (
	INSERT INTO steps (` + stepColumns + `)
	SELECT s.id, s.task_id, s.name, s.position, s.handler, ($37::text[])[s.deps_from:s.deps_to], s.state,
		s.attempts, s.max_attempts, s.retryable, s.skippable, s.results, s.error_message, s.error_class,
		s.error_retryable, s.next_retry_at, s.updated_at
	FROM unnest($19::text[], $20::text[], $21::text[], $22::integer[], $23::text[], $24::integer[], $25::integer[],
		$26::text[], $27::integer[], $28::integer[], $29::boolean[], $30::boolean[], $31::text[], $32::text[],
		$33::text[], $34::boolean[], $35::bigint[], $36::bigint[])
		AS s(task_id, id, name, position, handler, deps_from, deps_to, state, attempts, max_attempts, retryable,
			skippable, results, error_message, error_class, error_retryable, next_retry_at, updated_at)
), new_transitions AS (
	INSERT INTO transitions (task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token)
	SELECT tr.task_id, tr.step_id, tr.step_name, tr.from_state, tr.to_state, tr.at, tr.reason, tr.attempt, tr.metadata,
		tr.token
	FROM unnest($38::text[], $39::text[], $40::text[], $41::text[], $42::text[], $43::bigint[], $44::text[],
		$45::integer[], $46::text[], $47::bigint[]) WITH ORDINALITY
		AS tr(task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, token, ord)
	ORDER BY tr.ord
	RETURNING seq, task_id
)
SELECT t.*, (SELECT array_agg(n.seq ORDER BY n.seq) FROM new_transitions n WHERE n.task_id = t.id) FROM task t`

// createGroupable reports whether a create that is not debounced (a
// debounced one's statement also closes its key's open task; queueTaskCreate
// queues it first) can join a group: one that decides no admission in the
// transaction and does not start in error (whose draining flag
// createTaskSQL works out from its steps).
func createGroupable(params *store.TaskCreateParams) bool {
	return len(params.Admit) == 0 && params.Task.State != state.Error
}

// createGroup gathers plain creates of one pipeline, as the columns of
// groupCreateSQL's input.
type createGroup struct {
	first int // the first request in the group, which its statement is queued as
	out   map[string]*createResult

	id, namespace, name, version, state, context []string
	identityKey                                  []*string
	bypassFrom, bypassTo                         []int32
	createdAt, updatedAt                         []int64
	completedAt                                  []*int64
	ownerToken                                   []int64
	runAt                                        []*int64
	priority                                     []int32
	parentTask, parentStep                       []*string
	bypass                                       []string

	stepTask, stepID, stepName          []string
	stepPosition                        []int32
	stepHandler                         []string
	stepDepsFrom, stepDepsTo            []int32
	stepState                           []string
	stepAttempts, stepMaxAttempts       []int32
	stepRetryable, stepSkippable        []bool
	stepResults, stepMessage, stepClass []*string
	stepErrRetryable                    []*bool
	stepNextRetryAt                     []*int64
	stepUpdatedAt                       []int64
	deps                                []string
	trTask                              []string
	trStep                              []*string
	trStepName, trFrom, trTo            []string
	trAt                                []int64
	trReason                            []string
	trAttempt                           []int32
	trMetadata                          []*string
	trToken                             []int64
}

// groupCreate adds a create, which createGroupable accepts, to p's create
// group; args are its createArgs. The result is filled in when the group's
// statement is read. A group that already holds the task's ID, or an
// advance group that holds it, is queued first.
func (p *pipe) groupCreate(id string, args []any) *createResult {
	if (p.creates != nil && p.creates.out[id] != nil) || (p.group != nil && p.group.tasks[id]) {
		p.flushGroup()
	}
	g := p.creates
	if g == nil {
		// bypass_steps and depends_on are NOT NULL: an empty slice, not a
		// NULL array, when no task of the group names any.
		g = &createGroup{first: p.req, out: map[string]*createResult{}, bypass: []string{}, deps: []string{}}
		p.creates = g
	}
	res := &createResult{}
	g.out[id] = res

	// args is laid out by createArgs; its index is the parameter's number
	// in createTaskSQL, less one.
	g.id = append(g.id, args[0].(string))
	g.namespace = append(g.namespace, args[1].(string))
	g.name = append(g.name, args[2].(string))
	g.version = append(g.version, args[3].(string))
	g.state = append(g.state, args[4].(string))
	g.context = append(g.context, args[5].(string))
	g.identityKey = append(g.identityKey, args[6].(*string))
	bypass := args[7].([]string)
	g.bypassFrom = append(g.bypassFrom, int32(len(g.bypass)+1))
	g.bypass = append(g.bypass, bypass...)
	g.bypassTo = append(g.bypassTo, int32(len(g.bypass)))
	g.createdAt = append(g.createdAt, args[8].(int64))
	g.updatedAt = append(g.updatedAt, args[9].(int64))
	g.completedAt = append(g.completedAt, args[10].(*int64))
	token := args[37].(int64)
	g.ownerToken = append(g.ownerToken, token)
	g.runAt = append(g.runAt, args[38].(*int64))
	g.priority = append(g.priority, args[39].(int32))
	g.parentTask = append(g.parentTask, args[41].(*string))
	g.parentStep = append(g.parentStep, args[42].(*string))

	ids := args[11].([]string)
	for range ids {
		g.stepTask = append(g.stepTask, id)
	}
	g.stepID = append(g.stepID, ids...)
	g.stepName = append(g.stepName, args[12].([]string)...)
	g.stepPosition = append(g.stepPosition, args[13].([]int32)...)
	g.stepHandler = append(g.stepHandler, args[14].([]string)...)
	// depends_on slices are 1-based into this task's names: shifted past
	// the names the group holds already.
	shift := int32(len(g.deps))
	for _, from := range args[15].([]int32) {
		g.stepDepsFrom = append(g.stepDepsFrom, from+shift)
	}
	for _, to := range args[16].([]int32) {
		g.stepDepsTo = append(g.stepDepsTo, to+shift)
	}
	g.stepState = append(g.stepState, args[17].([]string)...)
	g.stepAttempts = append(g.stepAttempts, args[18].([]int32)...)
	g.stepMaxAttempts = append(g.stepMaxAttempts, args[19].([]int32)...)
	g.stepRetryable = append(g.stepRetryable, args[20].([]bool)...)
	g.stepSkippable = append(g.stepSkippable, args[21].([]bool)...)
	g.stepResults = append(g.stepResults, args[22].([]*string)...)
	g.stepMessage = append(g.stepMessage, args[23].([]*string)...)
	g.stepClass = append(g.stepClass, args[24].([]*string)...)
	g.stepErrRetryable = append(g.stepErrRetryable, args[25].([]*bool)...)
	g.stepNextRetryAt = append(g.stepNextRetryAt, args[26].([]*int64)...)
	g.stepUpdatedAt = append(g.stepUpdatedAt, args[27].([]int64)...)
	g.deps = append(g.deps, args[28].([]string)...)

	trSteps := args[29].([]*string)
	for range trSteps {
		g.trTask = append(g.trTask, id)
		g.trToken = append(g.trToken, token)
	}
	g.trStep = append(g.trStep, trSteps...)
	g.trStepName = append(g.trStepName, args[30].([]string)...)
	g.trFrom = append(g.trFrom, args[31].([]string)...)
	g.trTo = append(g.trTo, args[32].([]string)...)
	g.trAt = append(g.trAt, args[33].([]int64)...)
	g.trReason = append(g.trReason, args[34].([]string)...)
	g.trAttempt = append(g.trAttempt, args[35].([]int32)...)
	g.trMetadata = append(g.trMetadata, args[36].([]*string)...)
	return res
}

// args lays the group out as groupCreateSQL's parameters.
func (g *createGroup) args() []any {
	return []any{
		g.id, g.namespace, g.name, g.version, g.state, g.context, g.identityKey, g.bypassFrom, g.bypassTo,
		g.createdAt, g.updatedAt, g.completedAt, g.ownerToken, g.runAt, g.priority, g.parentTask, g.parentStep,
		g.bypass,
		g.stepTask, g.stepID, g.stepName, g.stepPosition, g.stepHandler, g.stepDepsFrom, g.stepDepsTo, g.stepState,
		g.stepAttempts, g.stepMaxAttempts, g.stepRetryable, g.stepSkippable, g.stepResults, g.stepMessage,
		g.stepClass, g.stepErrRetryable, g.stepNextRetryAt, g.stepUpdatedAt,
		g.deps,
		g.trTask, g.trStep, g.trStepName, g.trFrom, g.trTo, g.trAt, g.trReason, g.trAttempt, g.trMetadata, g.trToken,
	}
}

// queue queues the group's statement; p.req is the group's first request.
func (g *createGroup) queue(p *pipe) {
	p.addRaw(stmtGroupCreate, g.args(), readRows(func(rows pgx.Rows) error {
		var seqs []int64
		task, err := scanTask(rows, &seqs)
		if err != nil {
			return err
		}
		if res := g.out[task.ID]; res != nil {
			res.task, res.created, res.seqs = task, true, seqs
		}
		return nil
	}), nil)
}
