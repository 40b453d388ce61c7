package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// Rows as SQLite returns them. They never leave this package: every method
// converts them to store types.

const templateColumns = `namespace, name, version, digest, spec, created_at`

type templateRow struct {
	Namespace string `db:"namespace"`
	Name      string `db:"name"`
	Version   string `db:"version"`
	Digest    string `db:"digest"`
	Spec      string `db:"spec"`
	CreatedAt int64  `db:"created_at"`
}

func (r *templateRow) template() *store.Template {
	return &store.Template{
		Namespace: r.Namespace,
		Name:      r.Name,
		Version:   r.Version,
		Digest:    r.Digest,
		Spec:      json.RawMessage(r.Spec),
		CreatedAt: fromNanos(r.CreatedAt),
	}
}

const taskColumns = `id, namespace, name, version, state, context, identity_key, bypass_steps, created_at, updated_at, completed_at, owner_token, run_at, priority, debounce_key, parent_task_id, parent_step_id`

type taskRow struct {
	ID          string         `db:"id"`
	Namespace   string         `db:"namespace"`
	Name        string         `db:"name"`
	Version     string         `db:"version"`
	State       string         `db:"state"`
	Context     string         `db:"context"`
	IdentityKey sql.NullString `db:"identity_key"`
	BypassSteps string         `db:"bypass_steps"`
	CreatedAt   int64          `db:"created_at"`
	UpdatedAt   int64          `db:"updated_at"`
	CompletedAt sql.NullInt64  `db:"completed_at"`
	OwnerToken  int64          `db:"owner_token"`
	RunAt       sql.NullInt64  `db:"run_at"`
	Priority    int            `db:"priority"`
	DebounceKey sql.NullString `db:"debounce_key"`
	// Child tasks (migration 00021).
	ParentTaskID sql.NullString `db:"parent_task_id"`
	ParentStepID sql.NullString `db:"parent_step_id"`
}

func (r *taskRow) task() (*store.Task, error) {
	bypass, err := decodeNames(r.BypassSteps)
	if err != nil {
		return nil, fmt.Errorf("task %s bypass_steps: %w", r.ID, err)
	}
	return &store.Task{
		ID:           r.ID,
		Namespace:    r.Namespace,
		Name:         r.Name,
		Version:      r.Version,
		State:        state.State(r.State),
		Context:      json.RawMessage(r.Context),
		IdentityKey:  r.IdentityKey.String,
		BypassSteps:  bypass,
		CreatedAt:    fromNanos(r.CreatedAt),
		UpdatedAt:    fromNanos(r.UpdatedAt),
		CompletedAt:  fromNullNanos(r.CompletedAt),
		OwnerToken:   r.OwnerToken,
		RunAt:        fromNullNanos(r.RunAt),
		Priority:     r.Priority,
		DebounceKey:  r.DebounceKey.String,
		ParentTaskID: r.ParentTaskID.String,
		ParentStepID: r.ParentStepID.String,
	}, nil
}

const stepColumns = `id, task_id, name, position, handler, depends_on, state, attempts, max_attempts,
	retryable, skippable, results, error_message, error_class, error_retryable, next_retry_at, updated_at`

// stepReadColumns are what reads select: the inserted columns plus those
// only updates set (a new step starts from their defaults).
const stepReadColumns = stepColumns + `, generation`

type stepRow struct {
	ID             string         `db:"id"`
	TaskID         string         `db:"task_id"`
	Name           string         `db:"name"`
	Position       int            `db:"position"`
	Handler        string         `db:"handler"`
	DependsOn      string         `db:"depends_on"`
	State          string         `db:"state"`
	Attempts       int            `db:"attempts"`
	MaxAttempts    int            `db:"max_attempts"`
	Retryable      bool           `db:"retryable"`
	Skippable      bool           `db:"skippable"`
	Results        sql.NullString `db:"results"`
	ErrorMessage   sql.NullString `db:"error_message"`
	ErrorClass     sql.NullString `db:"error_class"`
	ErrorRetryable sql.NullBool   `db:"error_retryable"`
	NextRetryAt    sql.NullInt64  `db:"next_retry_at"`
	UpdatedAt      int64          `db:"updated_at"`
	Generation     int            `db:"generation"`
}

func (r *stepRow) step() (*store.Step, error) {
	deps, err := decodeNames(r.DependsOn)
	if err != nil {
		return nil, fmt.Errorf("step %s depends_on: %w", r.ID, err)
	}
	st := &store.Step{
		ID:          r.ID,
		TaskID:      r.TaskID,
		Name:        r.Name,
		Position:    r.Position,
		Handler:     r.Handler,
		DependsOn:   deps,
		State:       state.State(r.State),
		Attempts:    r.Attempts,
		MaxAttempts: r.MaxAttempts,
		Retryable:   r.Retryable,
		Skippable:   r.Skippable,
		Results:     fromNullJSON(r.Results),
		NextRetryAt: fromNullNanos(r.NextRetryAt),
		UpdatedAt:   fromNanos(r.UpdatedAt),
		Generation:  r.Generation,
	}
	// error_message is the marker: the three columns are set and cleared
	// together.
	if r.ErrorMessage.Valid {
		st.Error = &store.StepError{
			Message:   r.ErrorMessage.String,
			Class:     r.ErrorClass.String,
			Retryable: r.ErrorRetryable.Bool,
		}
	}
	return st, nil
}

const transitionColumns = `seq, task_id, step_id, step_name, from_state, to_state, at, reason, attempt, metadata, lease_token`

type transitionRow struct {
	Seq        int64          `db:"seq"`
	TaskID     string         `db:"task_id"`
	StepID     sql.NullString `db:"step_id"`
	StepName   string         `db:"step_name"`
	From       string         `db:"from_state"`
	To         string         `db:"to_state"`
	At         int64          `db:"at"`
	Reason     string         `db:"reason"`
	Attempt    int            `db:"attempt"`
	Metadata   sql.NullString `db:"metadata"`
	LeaseToken int64          `db:"lease_token"`
}

func (r *transitionRow) transition() *store.Transition {
	return &store.Transition{
		Seq:        r.Seq,
		TaskID:     r.TaskID,
		StepID:     r.StepID.String,
		StepName:   r.StepName,
		From:       state.State(r.From),
		To:         state.State(r.To),
		At:         fromNanos(r.At),
		Reason:     r.Reason,
		Attempt:    r.Attempt,
		Metadata:   fromNullJSON(r.Metadata),
		LeaseToken: r.LeaseToken,
	}
}

const leaseColumns = `coordinator_id, token, expires_at, address`

type leaseRow struct {
	CoordinatorID string `db:"coordinator_id"`
	Token         int64  `db:"token"`
	ExpiresAt     int64  `db:"expires_at"`
	Address       string `db:"address"`
}

func (r *leaseRow) lease() *store.Lease {
	return &store.Lease{CoordinatorID: r.CoordinatorID, Token: r.Token, Expires: fromNanos(r.ExpiresAt), Address: r.Address}
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

func toNullNanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}

// toNullJSON stores nil as NULL; JSON is kept as TEXT so SQLite's JSON
// functions can read it.
func toNullJSON(raw json.RawMessage) sql.NullString {
	if raw == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: string(raw), Valid: true}
}

func fromNullJSON(s sql.NullString) json.RawMessage {
	if !s.Valid {
		return nil
	}
	return json.RawMessage(s.String)
}

func toNullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

// encodeNames stores a list of step names as a JSON array; nil and empty
// are the same list and both read back as nil.
func encodeNames(names []string) (string, error) {
	if len(names) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(names)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func decodeNames(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(s), &names); err != nil {
		return nil, err
	}
	return names, nil
}
