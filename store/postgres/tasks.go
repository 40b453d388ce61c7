package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// maxListLimit caps TaskListActive and TaskClaim; it is also their page
// size when the caller gives none. TaskList honours any positive limit.
const maxListLimit = 1000

const stmtCreateTask = "tasker_create_task"

// createTaskSQL inserts a task, its steps and its initial transitions in one
// statement, so a create costs the committer one pipelined statement however
// many steps the task has. Steps and transitions come as parallel arrays,
// one per column; each step's depends_on is a slice [from:to] of one
// flattened array of names, since SQL arrays cannot be ragged.
//
// The task's owner_token ($38) and later columns ($39 to $43) come last, so
// adding them kept the others' numbers.
//
// Steps and transitions are joined to the task CTE, so when the task is not
// inserted (its identity key or ID is taken) neither are they, and the
// statement returns the existing task with the same identity key instead.
// Transitions are inserted in the order given (identity values are drawn as
// the sorted rows reach the INSERT), so their seqs, sorted, are theirs in
// order.
const createTaskSQL = createTaskCTE + `WHERE identity_key = $7::text AND NOT EXISTS (SELECT 1 FROM task)`

// createTaskCTE is createTaskSQL up to the WHERE that finds the task
// already stored; createDebouncedSQL shares it. A task with a debounce key
// ($41) is inserted open to debounced creates.
const createTaskCTE = `WITH task AS (
	INSERT INTO tasks (` + taskColumns + `, debounce_open, draining)
	VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text[],
		$9::bigint, $10::bigint, $11::bigint, $38::bigint, $39::bigint, $40::integer, $41::text,
		$42::text, $43::text, $41::text IS NOT NULL,
		$5::text = '` + string(state.Error) + `' AND '` + string(state.InProgress) + `' = ANY($18::text[]))
	ON CONFLICT DO NOTHING
	RETURNING ` + taskColumns + `
), new_steps AS (
	INSERT INTO steps (` + stepColumns + `)
	SELECT s.id, task.id, s.name, s.position, s.handler, ($29::text[])[s.deps_from:s.deps_to], s.state,
		s.attempts, s.max_attempts, s.retryable, s.skippable, s.results, s.error_message, s.error_class,
		s.error_retryable, s.next_retry_at, s.updated_at
	FROM task, unnest($12::text[], $13::text[], $14::integer[], $15::text[], $16::integer[], $17::integer[],
		$18::text[], $19::integer[], $20::integer[], $21::boolean[], $22::boolean[], $23::text[], $24::text[],
		$25::text[], $26::boolean[], $27::bigint[], $28::bigint[])
		AS s(id, name, position, handler, deps_from, deps_to, state, attempts, max_attempts, retryable, skippable,
			results, error_message, error_class, error_retryable, next_retry_at, updated_at)
), new_transitions AS (
	INSERT INTO transitions (task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token)
	SELECT task.id, tr.step_id, tr.step_name, tr.from_state, tr.to_state, tr.at, tr.reason, tr.attempt, tr.metadata,
		task.owner_token
	FROM task, unnest($30::text[], $31::text[], $32::text[], $33::text[], $34::bigint[], $35::text[],
		$36::integer[], $37::text[]) WITH ORDINALITY
		AS tr(step_id, step_name, from_state, to_state, at, reason, attempt, metadata, ord)
	ORDER BY tr.ord
	RETURNING seq
)
SELECT ` + taskColumns + `, true, (SELECT array_agg(seq ORDER BY seq) FROM new_transitions) FROM task
UNION ALL
SELECT ` + taskColumns + `, false, NULL FROM tasks
`

// TaskCreate implements store.Store. A nil Task.Context is stored as {}; the
// Task's ID is used for its steps and transitions.
func (s *Store) TaskCreate(ctx context.Context, params *store.TaskCreateParams) (*store.Task, bool, error) {
	if err := params.Validate(); err != nil {
		return nil, false, err
	}
	// Arguments are built here, on the caller's goroutine, so the committer
	// only queues them.
	args := createArgs(params)
	var undispatched []any
	if params.Undispatched != nil {
		undispatched = createArgs(params.Undispatched)
	}
	id := params.Task.ID
	var res *createResult
	debounced := params.Task.DebounceKey != ""
	err := s.write(ctx, "TaskCreate", func(p *pipe) {
		res = queueTaskCreate(p, params, args, undispatched)
	})
	if err != nil {
		return nil, false, err
	}
	params = params.Stored()
	if res.task != nil {
		if res.created {
			if len(res.seqs) != len(params.Transitions) {
				return nil, false, fmt.Errorf("TaskCreate: task %s: %d transitions stored, %d given",
					id, len(res.seqs), len(params.Transitions))
			}
			for i, tr := range params.Transitions {
				tr.Seq = res.seqs[i]
				tr.LeaseToken = params.Task.OwnerToken
			}
		}
		return res.task, res.created, nil
	}
	if debounced {
		// The open task another create stored after this statement began
		// (its insert waited for that one to commit, so it is visible now).
		return s.openDebounced(ctx, params.Task)
	}
	// Nothing was inserted and no task with this identity key was visible
	// to the statement: another coordinator inserted it after the statement
	// began (ON CONFLICT waited for that to commit, so it is visible now), or
	// the ID is taken by a task with another key.
	if params.Task.IdentityKey != "" {
		existing, err := s.taskByIdentityKey(ctx, params.Task.IdentityKey)
		if err == nil {
			return existing, false, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, false, err
		}
	}
	return nil, false, fmt.Errorf("TaskCreate: insert task %s: a task with this ID but another identity key exists", id)
}

// queueTaskCreate queues a create whose createArgs are args (and those of
// its Undispatched, if any, undispatched).
func queueTaskCreate(p *pipe, params *store.TaskCreateParams, args, undispatched []any) *createResult {
	id := params.Task.ID
	if params.Task.DebounceKey != "" {
		// A debounced task starts later: its creation dispatches
		// nothing, so there is nothing to admit.
		queueCloseDebounce(p, params.Task)
		return queueCreateWith(p, stmtCreateDebounced, id, args)
	}
	params.Refused = nil
	if p.grouping && createGroupable(params) {
		return p.groupCreate(id, args)
	}
	use := args
	if len(params.Admit) > 0 && !admitCreation(p, params) {
		use = undispatched
	}
	return queueCreate(p, id, use)
}

// createResult is what createTaskSQL answers: the new task, or the one
// already stored under the identity key, or (task nil) neither.
type createResult struct {
	task    *store.Task
	created bool
	seqs    []int64 // of the initial transitions, in order
}

func queueCreate(p *pipe, id string, args []any) *createResult {
	return queueCreateWith(p, stmtCreateTask, id, args)
}

// queueCreateWith queues createTaskSQL or a statement sharing its
// parameters and answer (createDebouncedSQL).
func queueCreateWith(p *pipe, stmt, id string, args []any) *createResult {
	res := &createResult{}
	p.query(stmt, args, func(rows pgx.Rows) error {
		var err error
		res.task, err = scanTask(rows, &res.created, &res.seqs)
		return err
	}, func(err *pgconn.PgError) error {
		return fmt.Errorf("TaskCreate: insert task %s: %w", id, err)
	})
	return res
}

// createArgs lays p out as createTaskSQL's parameters.
func createArgs(p *store.TaskCreateParams) []any {
	t := p.Task
	taskContext := string(t.Context)
	if t.Context == nil {
		taskContext = "{}"
	}
	n := len(p.Steps)
	var (
		ids, names, handlers, states     = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		positions, depsFrom, depsTo      = make([]int32, n), make([]int32, n), make([]int32, n)
		attempts, maxAttempts            = make([]int32, n), make([]int32, n)
		retryable, skippable             = make([]bool, n), make([]bool, n)
		results, errMessages, errClasses = make([]*string, n), make([]*string, n), make([]*string, n)
		errRetryable                     = make([]*bool, n)
		nextRetryAt                      = make([]*int64, n)
		updatedAt                        = make([]int64, n)
		deps                             = []string{}
	)
	for i, st := range p.Steps {
		ids[i], names[i], handlers[i], states[i] = st.ID, st.Name, st.Handler, string(st.State)
		positions[i] = int32(st.Position)
		// Array slices are 1-based and inclusive; from > to is empty.
		depsFrom[i] = int32(len(deps) + 1)
		deps = append(deps, st.DependsOn...)
		depsTo[i] = int32(len(deps))
		attempts[i], maxAttempts[i] = int32(st.Attempts), int32(st.MaxAttempts)
		retryable[i], skippable[i] = st.Retryable, st.Skippable
		results[i] = toNullJSON(st.Results)
		if e := st.Error; e != nil {
			errMessages[i], errClasses[i], errRetryable[i] = &e.Message, &e.Class, &e.Retryable
		}
		nextRetryAt[i] = toNullNanos(st.NextRetryAt)
		updatedAt[i] = toNanos(st.UpdatedAt)
	}

	m := len(p.Transitions)
	var (
		trStepIDs, trStepNames, trFrom, trTo, trReasons = make([]*string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m)
		trAt                                            = make([]int64, m)
		trAttempts                                      = make([]int32, m)
		trMetadata                                      = make([]*string, m)
	)
	for i, tr := range p.Transitions {
		trStepIDs[i], trStepNames[i] = toNullString(tr.StepID), tr.StepName
		trFrom[i], trTo[i] = string(tr.From), string(tr.To)
		trAt[i], trReasons[i], trAttempts[i] = toNanos(tr.At), tr.Reason, int32(tr.Attempt)
		trMetadata[i] = toNullJSON(tr.Metadata)
	}

	return []any{
		t.ID, t.Namespace, t.Name, t.Version, string(t.State), taskContext, toNullString(t.IdentityKey),
		toNames(t.BypassSteps), toNanos(t.CreatedAt), toNanos(t.UpdatedAt), toNullNanos(t.CompletedAt),
		ids, names, positions, handlers, depsFrom, depsTo, states, attempts, maxAttempts, retryable, skippable,
		results, errMessages, errClasses, errRetryable, nextRetryAt, updatedAt, deps,
		trStepIDs, trStepNames, trFrom, trTo, trAt, trReasons, trAttempts, trMetadata,
		t.OwnerToken, toNullNanos(t.RunAt), int32(t.Priority), toNullString(t.DebounceKey),
		toNullString(t.ParentTaskID), toNullString(t.ParentStepID),
	}
}

func (s *Store) taskByIdentityKey(ctx context.Context, key string) (*store.Task, error) {
	task, err := scanTask(s.reader.QueryRow(ctx, `SELECT `+taskColumns+` FROM tasks WHERE identity_key = $1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("task with identity key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get task with identity key %q", key)
	}
	return task, nil
}

// TaskGet implements store.Store.
func (s *Store) TaskGet(ctx context.Context, id string) (*store.Task, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("TaskGet: %w", store.ErrClosed)
	}
	task, err := scanTask(s.reader.QueryRow(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("task %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get task %s", id)
	}
	return task, nil
}

// TaskList implements store.Store. Each filter combination is served by an
// index ending in id, so paging newest-first never sorts the whole table.
func (s *Store) TaskList(ctx context.Context, params *store.TaskListParams) ([]*store.Task, error) {
	if params == nil {
		params = &store.TaskListParams{}
	}
	if err := store.CheckContextMatches(params.Context); err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	query, args := taskListQuery(params)
	return s.selectTasks(ctx, "list tasks", query, args...)
}

// contextMatchJSON is the JSON object that holds m's value at m's path
// and nothing else.
func contextMatchJSON(m store.ContextMatch) string {
	v := m.Value
	for i := len(m.Path) - 1; i >= 0; i-- {
		v = map[string]any{m.Path[i]: v}
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Check admits only strings, finite float64s, bools and nil,
		// all of which encode.
		panic(fmt.Sprintf("context match %q: %v", m.Path, err))
	}
	return string(b)
}

func taskListQuery(p *store.TaskListParams) (string, []any) {
	where, args := taskWhere(p)
	limit := p.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	args = append(args, limit)
	return `SELECT ` + taskColumns + ` FROM tasks` + where + ` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args)), args
}

// taskWhere is the WHERE clause (empty, or starting with a space) that
// keeps the tasks p selects, whatever its Limit; its parameters are $1
// onwards.
func taskWhere(p *store.TaskListParams) (string, []any) {
	var (
		where []string
		args  []any
	)
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if p.State != "" {
		arg("state =", string(p.State))
	}
	if p.Namespace != "" {
		arg("namespace =", p.Namespace)
	}
	if p.Name != "" {
		arg("name =", p.Name)
	}
	if p.BeforeID != "" {
		arg("id <", p.BeforeID)
	}
	if p.FromID != "" {
		arg("id >=", p.FromID)
	}
	if !p.CreatedAfter.IsZero() {
		arg("created_at >=", toNanos(p.CreatedAfter))
	}
	if !p.CreatedBefore.IsZero() {
		arg("created_at <", toNanos(p.CreatedBefore))
	}
	if p.Key != "" {
		// Both columns are unique keys: a BitmapOr of the two indexes.
		args = append(args, p.Key)
		n := "$" + strconv.Itoa(len(args))
		where = append(where, "(id = "+n+" OR identity_key = "+n+")")
	}
	if p.IDs != nil {
		args = append(args, p.IDs)
		where = append(where, "id = ANY($"+strconv.Itoa(len(args))+")")
	}
	for _, m := range p.Context {
		// Containment of {"a":{"b":v}} is equality at a.b for a scalar v
		// (an array there holding v does not contain it): jsonb compares
		// numbers by value and strings unescaped.
		arg("context::jsonb @>", contextMatchJSON(m))
	}
	if len(where) == 0 {
		return "", nil
	}
	return ` WHERE ` + strings.Join(where, " AND "), args
}

// taskListActiveQuery repeats the WHERE of the partial index tasks_active_id
// word for word (as literals, not parameters), which is what lets the
// planner prove the index covers the query and walk it in id order.
const taskListActiveQuery = `SELECT ` + taskColumns + ` FROM tasks
	WHERE state IN ('` + string(state.Pending) + `', '` + string(state.InProgress) + `') AND id > $1
	ORDER BY id LIMIT $2`

// TaskListActive implements store.Store. It reads only the partial index of
// unfinished tasks, however many finished ones the table holds.
func (s *Store) TaskListActive(ctx context.Context, params *store.TaskListActiveParams) ([]*store.Task, error) {
	if params == nil {
		params = &store.TaskListActiveParams{}
	}
	return s.selectTasks(ctx, "list active tasks", taskListActiveQuery, params.AfterID, listLimit(params.Limit))
}

func (s *Store) selectTasks(ctx context.Context, what, query string, args ...any) ([]*store.Task, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("%s: %w", what, store.ErrClosed)
	}
	rows, err := s.reader.Query(ctx, query, args...)
	if err != nil {
		return nil, s.readErr(err, "%s", what)
	}
	tasks, err := collect(rows, func(row pgx.Row) (*store.Task, error) { return scanTask(row) })
	if err != nil {
		return nil, s.readErr(err, "%s", what)
	}
	return tasks, nil
}

func listLimit(limit int) int {
	if limit <= 0 || limit > maxListLimit {
		return maxListLimit
	}
	return limit
}
