package postgres

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// Rows as PostgreSQL returns them never leave this package: each scan
// function below reads one row in its column list's order into a store type.

const templateColumns = `namespace, name, version, digest, spec, created_at`

// scanTemplate reads templateColumns, then any extra columns into extra.
func scanTemplate(row pgx.Row, extra ...any) (*store.Template, error) {
	var (
		t       store.Template
		spec    string
		created int64
	)
	if err := row.Scan(append([]any{&t.Namespace, &t.Name, &t.Version, &t.Digest, &spec, &created}, extra...)...); err != nil {
		return nil, err
	}
	t.Spec = json.RawMessage(spec)
	t.CreatedAt = fromNanos(created)
	return &t, nil
}

const taskColumns = `id, namespace, name, version, state, context, identity_key, bypass_steps,
	created_at, updated_at, completed_at, owner_token, run_at, priority, debounce_key, parent_task_id, parent_step_id`

// scanTask reads taskColumns, then any extra columns into extra.
func scanTask(row pgx.Row, extra ...any) (*store.Task, error) {
	var (
		t                store.Task
		taskState        string
		taskContext      string
		identityKey      *string
		debounceKey      *string
		parentTask       *string
		parentStep       *string
		bypass           []string
		created, updated int64
		completed, runAt *int64
		priority         int32
	)
	dest := append([]any{&t.ID, &t.Namespace, &t.Name, &t.Version, &taskState, &taskContext, &identityKey, &bypass,
		&created, &updated, &completed, &t.OwnerToken, &runAt, &priority, &debounceKey, &parentTask, &parentStep}, extra...)
	err := row.Scan(dest...)
	if err != nil {
		return nil, err
	}
	t.State = state.State(taskState)
	t.Context = json.RawMessage(taskContext)
	t.IdentityKey = fromNullString(identityKey)
	t.BypassSteps = fromNames(bypass)
	t.CreatedAt = fromNanos(created)
	t.UpdatedAt = fromNanos(updated)
	t.CompletedAt = fromNullNanos(completed)
	t.RunAt = fromNullNanos(runAt)
	t.Priority = int(priority)
	t.DebounceKey = fromNullString(debounceKey)
	t.ParentTaskID = fromNullString(parentTask)
	t.ParentStepID = fromNullString(parentStep)
	return &t, nil
}

const stepColumns = `id, task_id, name, position, handler, depends_on, state, attempts, max_attempts,
	retryable, skippable, results, error_message, error_class, error_retryable, next_retry_at, updated_at`

// stepReadColumns are what reads select (scanStep): the inserted columns
// plus those only updates set (a new step starts from their defaults).
const stepReadColumns = stepColumns + `, generation`

func scanStep(row pgx.Row) (*store.Step, error) {
	var (
		st             store.Step
		stepState      string
		position       int32
		attempts       int32
		maxAttempts    int32
		deps           []string
		results        *string
		errorMessage   *string
		errorClass     *string
		errorRetryable *bool
		nextRetryAt    *int64
		updated        int64
		generation     int32
	)
	err := row.Scan(&st.ID, &st.TaskID, &st.Name, &position, &st.Handler, &deps, &stepState, &attempts, &maxAttempts,
		&st.Retryable, &st.Skippable, &results, &errorMessage, &errorClass, &errorRetryable, &nextRetryAt, &updated,
		&generation)
	if err != nil {
		return nil, err
	}
	st.Position = int(position)
	st.DependsOn = fromNames(deps)
	st.State = state.State(stepState)
	st.Attempts = int(attempts)
	st.MaxAttempts = int(maxAttempts)
	st.Results = fromNullJSON(results)
	st.NextRetryAt = fromNullNanos(nextRetryAt)
	st.UpdatedAt = fromNanos(updated)
	st.Generation = int(generation)
	// error_message is the marker: the three columns are set and cleared
	// together.
	if errorMessage != nil {
		st.Error = &store.StepError{
			Message:   *errorMessage,
			Class:     fromNullString(errorClass),
			Retryable: errorRetryable != nil && *errorRetryable,
		}
	}
	return &st, nil
}

const transitionColumns = `seq, task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token`

func scanTransition(row pgx.Row) (*store.Transition, error) {
	var (
		tr       store.Transition
		stepID   *string
		from, to string
		at       int64
		attempt  int32
		metadata *string
	)
	err := row.Scan(&tr.Seq, &tr.TaskID, &stepID, &tr.StepName, &from, &to, &at, &tr.Reason, &attempt, &metadata, &tr.LeaseToken)
	if err != nil {
		return nil, err
	}
	tr.StepID = fromNullString(stepID)
	tr.From = state.State(from)
	tr.To = state.State(to)
	tr.At = fromNanos(at)
	tr.Attempt = int(attempt)
	tr.Metadata = fromNullJSON(metadata)
	return &tr, nil
}

const leaseColumns = `coordinator_id, token, expires_at, address`

func scanLease(row pgx.Row) (*store.Lease, error) {
	var (
		l       store.Lease
		expires int64
	)
	if err := row.Scan(&l.CoordinatorID, &l.Token, &expires, &l.Address); err != nil {
		return nil, err
	}
	l.Expires = fromNanos(expires)
	return &l, nil
}

// collect reads every row of rows with scan.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Times are stored as unix nanoseconds. The zero time is stored as 0 (or
// NULL where the column allows it) and read back as the zero time, because
// time.Time{}.UnixNano is undefined.

func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func toNullNanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

func fromNullNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return fromNanos(*n)
}

// toNullJSON stores nil as NULL and anything else byte for byte.
func toNullJSON(raw json.RawMessage) *string {
	if raw == nil {
		return nil
	}
	s := string(raw)
	return &s
}

func fromNullJSON(s *string) json.RawMessage {
	if s == nil {
		return nil
	}
	return json.RawMessage(*s)
}

// toNullString stores an empty optional id as NULL, which UNIQUE and
// foreign keys ignore.
func toNullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func fromNullString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// toNames stores a list of step names as a text[]; nil and empty are the
// same list (a nil slice would be NULL, which the columns refuse).
func toNames(names []string) []string {
	if names == nil {
		return []string{}
	}
	return names
}

// fromNames reads an empty array back as nil, as the SQLite driver does.
func fromNames(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	return names
}
