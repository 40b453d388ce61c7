package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// maxListLimit caps TaskListActive and TaskClaim; it is also their page
// size when the caller gives none. TaskList honours any positive limit.
const maxListLimit = 1000

// TaskCreate implements store.Store. A nil Task.Context is stored as {}; the
// Task's ID is used for its steps and transitions.
func (s *Store) TaskCreate(ctx context.Context, params *store.TaskCreateParams) (*store.Task, bool, error) {
	if err := params.Validate(); err != nil {
		return nil, false, err
	}
	var (
		task    *store.Task
		created bool
	)
	err := s.write(ctx, "TaskCreate", func(ctx context.Context, tx *wtx) error {
		var err error
		task, created, err = createTask(ctx, tx, params)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return task, created, nil
}

func createTask(ctx context.Context, tx *wtx, p *store.TaskCreateParams) (*store.Task, bool, error) {
	p.Refused = nil
	for _, r := range p.Admit {
		v, err := admission.Admit(ctx, admissionTx{tx}, r, p.Task.CreatedAt, p.Aging)
		if err != nil {
			return nil, false, fmt.Errorf("task %s: %w", p.Task.ID, err)
		}
		if !v.Admitted {
			p.Refused = append(p.Refused, store.Refusal{StepID: r.StepID, Verdict: *v})
			break
		}
	}
	p = p.Stored()
	t := p.Task
	bypass, err := encodeNames(t.BypassSteps)
	if err != nil {
		return nil, false, fmt.Errorf("task %s bypass steps: %w", t.ID, err)
	}
	taskContext := string(t.Context)
	if t.Context == nil {
		taskContext = "{}"
	}
	row := taskRow{
		ID:           t.ID,
		Namespace:    t.Namespace,
		Name:         t.Name,
		Version:      t.Version,
		State:        string(t.State),
		Context:      taskContext,
		IdentityKey:  toNullString(t.IdentityKey),
		BypassSteps:  bypass,
		CreatedAt:    toNanos(t.CreatedAt),
		UpdatedAt:    toNanos(t.UpdatedAt),
		CompletedAt:  toNullNanos(t.CompletedAt),
		RunAt:        toNullNanos(t.RunAt),
		OwnerToken:   t.OwnerToken,
		Priority:     t.Priority,
		DebounceKey:  toNullString(t.DebounceKey),
		ParentTaskID: toNullString(t.ParentTaskID),
		ParentStepID: toNullString(t.ParentStepID),
	}
	if t.DebounceKey != "" {
		if err := closeDebounce(ctx, tx, t); err != nil {
			return nil, false, err
		}
	}
	// Any uniqueness conflict leaves the row alone; the identity key then
	// says whether this is a repeat (return the stored task) or a reused ID
	// (an error).
	r := tx.raw
	r.reset(17)
	r.add(row.ID, row.Namespace, row.Name, row.Version, row.State, row.Context, nullString(t.IdentityKey), row.BypassSteps,
		row.CreatedAt, row.UpdatedAt, nullNanos(t.CompletedAt), t.OwnerToken, nullNanos(t.RunAt), int64(row.Priority),
		nullString(t.DebounceKey), nullString(t.ParentTaskID), nullString(t.ParentStepID))
	res, err := r.exec(ctx, sqlInsertTask)
	if err != nil {
		return nil, false, fmt.Errorf("insert task %s: %w", t.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, false, fmt.Errorf("insert task %s: %w", t.ID, err)
	}
	if n == 0 && t.DebounceKey != "" {
		if open, err := openDebounced(ctx, tx, t); err == nil {
			return open, false, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, false, err
		}
	}
	if n == 0 {
		var existing taskRow
		err := tx.GetContext(ctx, &existing, `SELECT `+taskColumns+` FROM tasks WHERE identity_key = ?`, t.IdentityKey)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, fmt.Errorf("insert task %s: a task with this ID but another identity key exists", t.ID)
		}
		if err != nil {
			return nil, false, fmt.Errorf("read task with identity key %q: %w", t.IdentityKey, err)
		}
		task, err := existing.task()
		return task, false, err
	}

	if err := insertSteps(ctx, tx, t.ID, p.Steps); err != nil {
		return nil, false, err
	}
	for _, tr := range p.Transitions {
		tr.LeaseToken = t.OwnerToken
		tx.transitions = append(tx.transitions, pendingTransition{taskID: t.ID, key: taskKey{t.Namespace, t.Name}, tr: tr})
	}
	task, err := row.task()
	return task, true, err
}

// stepRowColumns is the number of values one step row binds.
const stepRowColumns = 17

// stepInserts are the prepared multi-row step INSERTs, entry k inserting
// 2^k rows, used as transitionInserts are: a task's steps go in one
// statement per power of two in their count, not one per step. The
// largest binds 64 × 17 = 1,088 values.
var stepInserts = func() (texts [7]string) {
	for k := range texts {
		rows := strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?), ", 1<<k), ", ")
		texts[k] = `INSERT INTO steps (` + stepColumns + `) VALUES ` + rows
	}
	return texts
}()

// insertSteps stores steps under taskID, in order. If a statement fails
// (a step's ID or name is taken), SQLite has undone it alone, and its
// steps are inserted one at a time, so the error names the step at fault,
// as it would have had each been inserted by itself.
func insertSteps(ctx context.Context, tx *wtx, taskID string, steps []*store.Step) error {
	r := tx.raw
	for k := len(stepInserts) - 1; k >= 0; k-- {
		size := 1 << k
		for len(steps) >= size {
			chunk := steps[:size]
			steps = steps[size:]
			r.reset(size * stepRowColumns)
			for _, st := range chunk {
				if err := addStepArgs(r, taskID, st); err != nil {
					return err
				}
			}
			err := r.run(ctx, stepInserts[k])
			if err != nil && size == 1 {
				return fmt.Errorf("insert step %s (%s) of task %s: %w", chunk[0].Name, chunk[0].ID, taskID, err)
			}
			if err != nil {
				for _, st := range chunk {
					if err := insertSteps(ctx, tx, taskID, []*store.Step{st}); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// addStepArgs adds the values of st's row to r's arguments, in
// stepColumns order.
func addStepArgs(r *rawWriter, taskID string, st *store.Step) error {
	deps, err := encodeNames(st.DependsOn)
	if err != nil {
		return fmt.Errorf("step %s depends_on: %w", st.Name, err)
	}
	var errMsg, errClass, errRetryable driver.Value
	if st.Error != nil {
		errMsg, errClass, errRetryable = st.Error.Message, st.Error.Class, st.Error.Retryable
	}
	r.add(st.ID, taskID, st.Name, int64(st.Position), st.Handler, deps, string(st.State), int64(st.Attempts),
		int64(st.MaxAttempts), st.Retryable, st.Skippable, nullJSON(st.Results), errMsg, errClass,
		errRetryable, nullNanos(st.NextRetryAt), toNanos(st.UpdatedAt))
	return nil
}

// TaskGet implements store.Store.
func (s *Store) TaskGet(ctx context.Context, id string) (*store.Task, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("TaskGet: %w", store.ErrClosed)
	}
	var row taskRow
	err := s.reader.GetContext(ctx, &row, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("task %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, s.readErr(err, "get task %s", id)
	}
	return row.task()
}

// TaskList implements store.Store. Each filter combination is served by an
// index ending in id, so paging newest-first never sorts the whole table.
func (s *Store) TaskList(ctx context.Context, params *store.TaskListParams) ([]*store.Task, error) {
	if params == nil {
		params = &store.TaskListParams{}
	}
	if err := checkContextMatches(params.Context); err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	query, args := taskListQuery(params)
	return s.selectTasks(ctx, "list tasks", query, args...)
}

// checkContextMatches refuses a match no statement here can run: one no
// store can, or a key holding a double quote (contextMatchSQL quotes keys).
func checkContextMatches(ms []store.ContextMatch) error {
	if err := store.CheckContextMatches(ms); err != nil {
		return err
	}
	for _, m := range ms {
		if slices.ContainsFunc(m.Path, func(k string) bool { return strings.Contains(k, `"`) }) {
			return fmt.Errorf("context match %q: a key with a double quote cannot be matched here", m.Path)
		}
	}
	return nil
}

// contextMatchSQL is the condition that a task's context holds m. The JSON
// type is checked besides the value, as ->> turns JSON true into 1 and
// "1" into 1 alike; strings compare unescaped and numbers as numbers, as
// JSON (and PostgreSQL's jsonb) means them. A path's keys are quoted, so
// a key may hold any character but a double quote.
func contextMatchSQL(m store.ContextMatch) (string, []any) {
	var b strings.Builder
	b.WriteString("$")
	for _, k := range m.Path {
		b.WriteString(`."`)
		b.WriteString(k)
		b.WriteString(`"`)
	}
	path := b.String()
	switch v := m.Value.(type) {
	case string:
		return "(json_type(context, ?) = 'text' AND context ->> ? = ?)", []any{path, path, v}
	case float64:
		return "(json_type(context, ?) IN ('integer', 'real') AND context ->> ? = ?)", []any{path, path, v}
	case bool:
		return "json_type(context, ?) = ?", []any{path, strconv.FormatBool(v)}
	default:
		return "json_type(context, ?) = 'null'", []any{path}
	}
}

func taskListQuery(p *store.TaskListParams) (string, []any) {
	where, args := taskWhere(p)
	query := `SELECT ` + taskColumns + ` FROM tasks` + where + ` ORDER BY id DESC LIMIT ?`
	limit := p.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	return query, append(args, limit)
}

// taskWhere is the WHERE clause (empty, or starting with a space) that
// keeps the tasks p selects, whatever its Limit.
func taskWhere(p *store.TaskListParams) (string, []any) {
	var (
		where []string
		args  []any
	)
	if p.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(p.State))
	}
	if p.Namespace != "" {
		where = append(where, "namespace = ?")
		args = append(args, p.Namespace)
	}
	if p.Name != "" {
		where = append(where, "name = ?")
		args = append(args, p.Name)
	}
	if p.BeforeID != "" {
		where = append(where, "id < ?")
		args = append(args, p.BeforeID)
	}
	if p.FromID != "" {
		where = append(where, "id >= ?")
		args = append(args, p.FromID)
	}
	if !p.CreatedAfter.IsZero() {
		where = append(where, "created_at >= ?")
		args = append(args, toNanos(p.CreatedAfter))
	}
	if !p.CreatedBefore.IsZero() {
		where = append(where, "created_at < ?")
		args = append(args, toNanos(p.CreatedBefore))
	}
	if p.Key != "" {
		// Both columns are unique keys: the planner reads each index once
		// (a multi-index OR), never the table.
		where = append(where, "(id = ? OR identity_key = ?)")
		args = append(args, p.Key, p.Key)
	}
	if p.IDs != nil {
		if len(p.IDs) == 0 {
			where = append(where, "0")
		} else {
			where = append(where, "id IN (?"+strings.Repeat(", ?", len(p.IDs)-1)+")")
			for _, id := range p.IDs {
				args = append(args, id)
			}
		}
	}
	for _, m := range p.Context {
		cond, margs := contextMatchSQL(m)
		where = append(where, cond)
		args = append(args, margs...)
	}
	if len(where) == 0 {
		return "", nil
	}
	return ` WHERE ` + strings.Join(where, " AND "), args
}

// taskListActiveQuery repeats the WHERE of the partial index
// tasks_active_id word for word, which is what lets SQLite use it, and
// names the index: left to itself the planner may pick tasks_state_id and
// sort every active task for each page. INDEXED BY fails the query rather
// than falling back to a scan if the index ever stops matching.
const taskListActiveQuery = `SELECT ` + taskColumns + ` FROM tasks INDEXED BY tasks_active_id
	WHERE state IN ('` + string(state.Pending) + `', '` + string(state.InProgress) + `') AND id > ?
	ORDER BY id LIMIT ?`

// TaskListActive implements store.Store. It reads only the partial index of
// unfinished tasks, however many finished ones the file holds.
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
	var rows []taskRow
	if err := s.reader.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, s.readErr(err, "%s", what)
	}
	out := make([]*store.Task, len(rows))
	for i := range rows {
		task, err := rows[i].task()
		if err != nil {
			return nil, err
		}
		out[i] = task
	}
	return out, nil
}

func listLimit(limit int) int {
	if limit <= 0 || limit > maxListLimit {
		return maxListLimit
	}
	return limit
}
