// Package store defines the persistence boundary of the coordinator: one
// narrow interface, implemented by a driver per database (store/sqlite, and
// later store/postgres), all held to one conformance suite (store/storetest).
//
// Methods are named noun first, take a *Params struct where they need more
// than an id, and return this package's types, never database rows.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tasker-go/tasker/admission"
	"github.com/tasker-go/tasker/state"
)

// Errors every driver returns, wrapped with detail; test them with errors.Is.
var (
	// ErrNotFound means the template, task or step does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a precondition of a write no longer held (a step was
	// not in the expected state or attempt), so nothing was written.
	ErrConflict = errors.New("conflict")
	// ErrTemplateExists means the namespace, name and version are taken by a
	// template with different content.
	ErrTemplateExists = errors.New("template version already registered with different content")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrUnavailable means the database could not do the work now (busy,
	// locked, disk full, read-only, I/O error) and nothing was written;
	// the same call may succeed later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrLeaseLost means the caller's coordinator lease has expired or been
	// replaced, so it no longer owns the task (or anything): the write was
	// refused. This is the fence that stops a paused or partitioned
	// coordinator from changing tasks another coordinator took over.
	ErrLeaseLost = errors.New("coordinator lease lost")
	// ErrOwned means another coordinator holds a live lease on the task, so
	// it was not taken. The error is an *OwnedError, which names the owner
	// and where it can be reached.
	ErrOwned = errors.New("task owned by another coordinator")
)

// OwnedError is TaskTake's refusal: the task belongs to Owner, a lease live
// at the time of the take. errors.Is(err, ErrOwned) holds for it, and
// errors.As recovers it, so a caller can forward the request to the owner.
type OwnedError struct {
	TaskID string
	Owner  Lease
}

// Error names the task, the owner and where the owner can be reached.
func (e *OwnedError) Error() string {
	where := e.Owner.Address
	if where == "" {
		where = "no address"
	}
	return fmt.Sprintf("task %s is owned by coordinator %s (lease %d, %s) until %s",
		e.TaskID, e.Owner.CoordinatorID, e.Owner.Token, where, e.Owner.Expires.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrOwned) true for an *OwnedError.
func (e *OwnedError) Is(target error) bool { return target == ErrOwned }

// Store is what the coordinator needs from a database. Implementations must be
// safe for concurrent use. Writes that change state (TaskCreate, TaskAdvance)
// are durable when they return nil, and drivers group concurrent calls into
// shared transactions (group commit) without weakening that promise.
type Store interface {
	// TemplateRegister stores a template. If the same namespace, name and
	// version exist with the same Digest it returns the stored one and
	// created=false; with a different Digest it returns ErrTemplateExists.
	TemplateRegister(ctx context.Context, params *TemplateRegisterParams) (tmpl *Template, created bool, err error)
	// TemplateGet returns one version of a template, or ErrNotFound.
	TemplateGet(ctx context.Context, params *TemplateGetParams) (*Template, error)
	// TemplateList returns templates ordered by namespace, name, then
	// insertion; a zero filter field matches all.
	TemplateList(ctx context.Context, params *TemplateListParams) ([]*Template, error)

	// TaskCreate inserts a task, its steps and their initial transitions in
	// one transaction, and sets Seq and LeaseToken on each of
	// params.Transitions. If a task with the same IdentityKey exists,
	// nothing is written and that task is returned with created=false.
	//
	// A task with a DebounceKey is stored open to debounced creates: at most
	// one task per Namespace, Name and DebounceKey is open. If another is
	// open and has not started (it is pending and its RunAt is after the
	// new task's CreatedAt), nothing is written and that task is returned
	// with created=false; if it has started, it is closed and the new task
	// stored in its place, in one transaction. Of concurrent creates with
	// one key, exactly one stores a task and the others return it.
	TaskCreate(ctx context.Context, params *TaskCreateParams) (task *Task, created bool, err error)
	// TaskDebounce folds a repeated debounced create into the open task it
	// found: it replaces the task's Context and RunAt, on condition that the
	// task is still pending and open to debounced creates, its stored RunAt
	// is ExpectRunAt, and that time is after At (the task has not started).
	// If any does not hold, nothing is written and the error wraps
	// ErrConflict; an unknown task is ErrNotFound; Lease, when set, fences
	// the write as in TaskAdvance (ErrLeaseLost). No transition is recorded
	// and UpdatedAt is kept: the task's state does not change.
	TaskDebounce(ctx context.Context, params *TaskDebounceParams) error
	// TaskGet returns one task without its steps, or ErrNotFound.
	TaskGet(ctx context.Context, id string) (*Task, error)
	// TaskSnapshot returns one task with its steps and transitions as of a
	// single moment (one read transaction), or ErrNotFound: the states it
	// shows are the ones its last transition left, so a reader that follows
	// on from that transition misses nothing and repeats nothing.
	TaskSnapshot(ctx context.Context, id string) (*TaskSnapshot, error)
	// TaskList returns tasks newest first (by ID, which is time-ordered),
	// filtered and paged by BeforeID, at most Limit of them: any positive
	// Limit is honoured exactly, so a caller may ask for one more row than
	// it shows to learn whether another page exists.
	TaskList(ctx context.Context, params *TaskListParams) ([]*Task, error)
	// TaskCount counts tasks by state, filtered by TaskCountParams, in the
	// order of state.All, leaving out states with none. It is answered
	// from an index (one entry per task, no task row read).
	TaskCount(ctx context.Context, params *TaskCountParams) ([]StateCount, error)
	// TaskListActive returns tasks in pending or in_progress, oldest first,
	// after AfterID; the coordinator resumes them on start.
	TaskListActive(ctx context.Context, params *TaskListActiveParams) ([]*Task, error)
	// TaskAdvance applies a set of task and step transitions for one task
	// atomically. Each change is conditional on the current state (and, for
	// steps, the attempt count); if any does not hold, nothing is written
	// and the error wraps ErrConflict. It returns the stored transitions in
	// order, with their sequence numbers.
	TaskAdvance(ctx context.Context, params *TaskAdvanceParams) ([]*Transition, error)

	// TaskListFinished returns the tasks of one template (of one version,
	// when Version is set) that are in a final state (complete, error,
	// cancelled or resolved_manually) and reached it in [Since, Until):
	// their UpdatedAt, which moves only with the task's own state, is in
	// the window. Latest first (by UpdatedAt, then ID), at most Limit. It
	// reads an index of finished tasks by template and UpdatedAt, so it
	// costs in proportion to the template's tasks that finished in the
	// window, however many are stored outside it.
	TaskListFinished(ctx context.Context, params *TaskListFinishedParams) ([]*Task, error)

	// StepList returns the steps of the given tasks, ordered by task then
	// position in the template.
	StepList(ctx context.Context, taskIDs ...string) ([]*Step, error)
	// TransitionList returns a task's transitions (task and step) with Seq
	// greater than AfterSeq, oldest first.
	TransitionList(ctx context.Context, params *TransitionListParams) ([]*Transition, error)
	// TransitionListTasks returns the transitions (task and step) of the
	// given tasks, ordered by task then Seq.
	TransitionListTasks(ctx context.Context, taskIDs ...string) ([]*Transition, error)

	// LeaseAcquire starts a lease for a coordinator with a fresh token,
	// larger than every token issued before. It replaces any lease held
	// under the same CoordinatorID (a restart), so the tasks of the old one
	// can be claimed at once.
	LeaseAcquire(ctx context.Context, params *LeaseAcquireParams) (*Lease, error)
	// LeaseRenew extends a live lease. It returns ErrLeaseLost if the lease
	// expired before Now or was replaced.
	LeaseRenew(ctx context.Context, params *LeaseRenewParams) (*Lease, error)
	// LeaseList returns the leases live at now, by coordinator id.
	LeaseList(ctx context.Context, now time.Time) ([]*Lease, error)
	// TaskClaim makes the lease the owner of up to Limit tasks that still
	// have work, whose owning lease is not live (expired, replaced, or
	// none), oldest first, and returns them. A task has work when it is
	// pending or in_progress, or when it is in error but a step is still
	// in_progress: that step was running when the task failed, and its
	// result must still be recorded by someone. Finished tasks are never
	// read, so a claim costs in proportion to the tasks with work, not to
	// the history. It returns ErrLeaseLost if the claiming lease is not
	// live itself.
	TaskClaim(ctx context.Context, params *TaskClaimParams) ([]*Task, error)
	// TaskTake makes the lease the owner of one task, in any state
	// (finished ones included), if the task's owning lease is not live at
	// Now (expired, replaced, or none) or is this lease already, and
	// returns the task as stored after the take. If another live lease
	// owns it, nothing is written and the error is an *OwnedError naming
	// that lease (errors.Is(err, ErrOwned)). An unknown task is
	// ErrNotFound; a taking lease that is not live itself is ErrLeaseLost.
	// Concurrent takes, claims and fenced advances of the task are
	// serialised: of two coordinators taking a task at once, exactly one
	// owns it afterwards and the other is told who. If the owner's lease is
	// replaced while the take runs, it may fail with ErrConflict; the same
	// call then gets a definite answer.
	TaskTake(ctx context.Context, params *TaskTakeParams) (*Task, error)

	// EventList returns a page of the event log: the transitions of all
	// tasks after params.After, in log order, each with its cursor, and
	// the cursor to continue from. The log order is the same for every
	// reader and every call, and an entry is listed only once every entry
	// before it in that order is committed (or will never be), so reading
	// on from Next, or from the cursor of the last event received, misses
	// nothing and repeats nothing, across calls, processes and
	// coordinators sharing the database. A task's transitions appear in
	// the order they were written, and the entries of a transaction that
	// committed before another began come before the other's. A cursor
	// below the floor EventPrune left is refused with a
	// *CursorExpiredError; one this store did not issue, with
	// ErrCursorInvalid; one handed out for events that a restore from a
	// backup undid, with a *CursorRestoredError.
	EventList(ctx context.Context, params *EventListParams) (*EventPage, error)
	// EventTail returns a cursor after which EventList lists only entries
	// not yet committed when the call was made (on a shared database,
	// possibly also a few committed just before it; never fewer).
	EventTail(ctx context.Context) (string, error)
	// EventPrune deletes old entries of the event log in one bounded
	// batch: it moves the log's floor forward over the entries, in log
	// order, written before params.Before (stopping at the first newer
	// one), and of those deletes the ones of tasks that finished before
	// params.Before with no step still running, except each such task's
	// last task transition, which says how it ended. Entries of tasks
	// still running are kept: a task's history is deleted only once it is
	// finished. Cursors below the new floor are refused by EventList from
	// then on.
	EventPrune(ctx context.Context, params *EventPruneParams) (*EventPruneResult, error)
	// TaskPrune deletes, in one bounded batch, tasks that finished
	// (complete, cancelled or resolved_manually; not error, which an
	// operator may still retry) before params.Before, with all that is
	// stored of them: steps, transitions, signals, admission entries. A
	// task is kept while any of its transitions is still in the event log
	// above its floor (EventPrune has not passed it yet, so a subscriber
	// may still read it), while a step of it runs, while a child task of
	// it has not finished, and, for a child task, while its parent is kept
	// (a child goes after its parent, whose step names it). Schedule runs
	// keep the ids of tasks deleted.
	TaskPrune(ctx context.Context, params *TaskPruneParams) (*TaskPruneResult, error)

	// RateLimitSet creates the named rate limit or replaces its Units,
	// Period and Burst, keeping CreatedAt, and returns it as stored.
	RateLimitSet(ctx context.Context, params *RateLimitSetParams) (*RateLimit, error)
	// RateLimitGet returns one rate limit, or ErrNotFound.
	RateLimitGet(ctx context.Context, name string) (*RateLimit, error)
	// RateLimitList returns every rate limit, by name.
	RateLimitList(ctx context.Context) ([]*RateLimit, error)
	// RateLimitDelete deletes a rate limit, or returns ErrNotFound.
	RateLimitDelete(ctx context.Context, name string) error

	// ScheduleStore keeps cron schedules and their runs (schedules.go).
	ScheduleStore
	// SignalStore keeps the signals sent to tasks (signals.go).
	SignalStore

	// Close releases the store; calls in progress may fail with ErrClosed.
	Close() error
}

// Lease is a coordinator's right to own tasks until Expires. Tokens are
// unique and only grow, so a task's OwnerToken names exactly one lease.
type Lease struct {
	CoordinatorID string
	Token         int64
	Expires       time.Time
	// Address is where the coordinator holding the lease serves gRPC to
	// its peers (host:port); empty if it gave none.
	Address string
}

// LeaseAcquireParams are the arguments of LeaseAcquire.
type LeaseAcquireParams struct {
	CoordinatorID string
	TTL           time.Duration
	Now           time.Time
	// Address is stored with the lease (see Lease.Address).
	Address string
}

// LeaseRenewParams are the arguments of LeaseRenew.
type LeaseRenewParams struct {
	Lease *Lease
	TTL   time.Duration
	Now   time.Time
}

// TaskClaimParams are the arguments of TaskClaim.
type TaskClaimParams struct {
	Lease *Lease
	Now   time.Time
	Limit int
}

// TaskTakeParams are the arguments of TaskTake.
type TaskTakeParams struct {
	Lease  *Lease
	TaskID string
	Now    time.Time
}

// Template is a stored template version. Spec is the normalized template as
// JSON; the store does not interpret it.
type Template struct {
	Namespace string
	Name      string
	Version   string
	Digest    string
	Spec      json.RawMessage
	CreatedAt time.Time
}

// TemplateRegisterParams are the arguments of TemplateRegister.
type TemplateRegisterParams struct {
	Namespace string
	Name      string
	Version   string
	// Digest identifies the content, so identical re-registration is a
	// no-op.
	Digest string
	Spec   json.RawMessage
	At     time.Time
}

// TemplateGetParams names one template version.
type TemplateGetParams struct {
	Namespace string
	Name      string
	Version   string
}

// TemplateListParams filters TemplateList.
type TemplateListParams struct {
	Namespace string
	Name      string
}

// Task is a stored task without its steps.
type Task struct {
	ID          string
	Namespace   string
	Name        string
	Version     string
	State       state.State
	Context     json.RawMessage
	IdentityKey string
	BypassSteps []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// CompletedAt is zero unless the task reached complete.
	CompletedAt time.Time
	// OwnerToken is the token of the lease that owns the task (0: none).
	OwnerToken int64
	// RunAt, when set, is when the task was to start: it waits, pending,
	// until then.
	RunAt time.Time
	// Priority orders the task's steps when executor slots are short
	// (higher first); 0 reads as the default.
	Priority int
	// DebounceKey, when set, makes the task a debounced one: creates of
	// the same template with the same key fold into it until it starts
	// (see TaskCreate and TaskDebounce). It stays set after that.
	DebounceKey string
	// ParentTaskID and ParentStepID, for a child task (a step of the
	// parent declared `task:`), name the parent task and the step whose
	// attempt created it; empty for any other task. They are set at
	// creation and never change.
	ParentTaskID string
	ParentStepID string
}

// Step is a stored step. Its handler config, backoff and timeout live in the
// task's pinned template version, not here.
type Step struct {
	ID          string
	TaskID      string
	Name        string
	Position    int
	Handler     string
	DependsOn   []string
	State       state.State
	Attempts    int
	MaxAttempts int
	Retryable   bool
	Skippable   bool
	// Results is the JSON of the successful attempt (or of a manual
	// resolution); nil if none.
	Results json.RawMessage
	// Error describes the last failed attempt; nil if none or once the step
	// completed.
	Error *StepError
	// NextRetryAt is when an errored step may be retried; zero if unset.
	NextRetryAt time.Time
	UpdatedAt   time.Time
	// Generation counts the reruns of the step: 0 at creation (TaskCreate
	// stores 0 whatever it is given), one more after each StepChange with
	// Rerun. Every attempt of one run shares it, so it makes the
	// idempotency key handlers get for their own side effects.
	Generation int
}

// StepError describes a failed attempt.
type StepError struct {
	Message   string `json:"message"`
	Class     string `json:"class"`
	Retryable bool   `json:"retryable"`
}

// Transition is one stored change of state of a task (StepID empty) or a
// step.
type Transition struct {
	Seq      int64
	TaskID   string
	StepID   string
	StepName string
	From     state.State
	To       state.State
	At       time.Time
	Reason   string
	Attempt  int
	Metadata json.RawMessage
	// LeaseToken is the token of the lease that wrote the transition: the
	// fencing lease of its TaskAdvance, or the task's OwnerToken for the
	// initial ones TaskCreate stores; 0 when written without a lease. It
	// lets fencing be audited from the history.
	LeaseToken int64
}

// TaskCreateParams are the arguments of TaskCreate. The task and steps are
// inserted as given (states included); Transitions are the initial history,
// e.g. a bypassed step's move to resolved_manually.
type TaskCreateParams struct {
	Task        *Task
	Steps       []*Step
	Transitions []*Transition
	// Admit, when set, makes the dispatch the creation carries conditional
	// on admitting each request in order (the task's concurrency keys
	// first, then each dispatched step's keys and rate limits): if one is
	// refused, Undispatched (the same task, pending, nothing dispatched) is
	// stored instead, and Refused says why. Requests admitted before the
	// refusal keep their places, which the next dispatch finds its own.
	Admit        []*admission.Request
	Undispatched *TaskCreateParams
	// Aging is as in TaskAdvanceParams.
	Aging time.Duration
	// Refused is set by TaskCreate: the refusal that stored Undispatched.
	Refused []Refusal
}

// Stored is what TaskCreate stored of p: p itself, or p.Undispatched after
// a refused admission.
func (p *TaskCreateParams) Stored() *TaskCreateParams {
	if len(p.Refused) > 0 && p.Undispatched != nil {
		return p.Undispatched
	}
	return p
}

// TaskDebounceParams are the arguments of TaskDebounce.
type TaskDebounceParams struct {
	TaskID string
	// Lease, when set, fences the write (see TaskAdvanceParams.Lease).
	Lease *Lease
	// Context replaces the stored context; nil stores {}.
	Context json.RawMessage
	// RunAt replaces the stored start time.
	RunAt time.Time
	// ExpectRunAt must equal the stored start time, which must be after At.
	ExpectRunAt time.Time
	At          time.Time
}

// TaskListParams filters and pages TaskList; zero fields match all.
type TaskListParams struct {
	State     state.State
	Namespace string
	Name      string
	// BeforeID returns only tasks with a smaller ID (the next page).
	BeforeID string
	// FromID returns only tasks with an ID at least this one. IDs grow with
	// creation time, so a caller that knows how its IDs encode time turns a
	// time range into an ID range the primary key can serve.
	FromID string
	// CreatedAfter keeps tasks created at or after it; CreatedBefore keeps
	// tasks created before it; zero means no bound.
	CreatedAfter, CreatedBefore time.Time
	// Key keeps only the task whose ID or IdentityKey it is.
	Key string
	// IDs, when not nil, keeps only the tasks with these ids (none when
	// empty): a batch of reads in one statement.
	IDs []string
	// Context keeps only tasks whose context holds every one of these
	// values. Nothing indexes a context: the store reads the context of each
	// task the other filters leave, newest first, until the page is full.
	Context []ContextMatch
	// Limit is the most tasks returned, honoured exactly; zero (or less)
	// means DefaultListLimit.
	Limit int
}

// ContextMatch is a value a task's context must hold at a path.
type ContextMatch struct {
	// Path names a field: Path[0] a key of the context object, each next
	// element a key of the object before it. Never empty.
	Path []string
	// Value is what the field must equal: a string, a float64 (any JSON
	// number of the same value matches), a bool, or nil for JSON null.
	// Objects and arrays are not matched.
	Value any
}

// Check reports a match no store can run: an empty path or key, or a
// value of another type. The API checks its callers' matches before they
// get here.
func (m ContextMatch) Check() error {
	if len(m.Path) == 0 {
		return errors.New("context match: empty path")
	}
	for _, k := range m.Path {
		if k == "" {
			return fmt.Errorf("context match %q: empty key", m.Path)
		}
	}
	switch v := m.Value.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("context match %q: %v is not a JSON number", m.Path, v)
		}
		return nil
	case nil, string, bool:
		return nil
	}
	return fmt.Errorf("context match %q: a value of type %T cannot be matched", m.Path, m.Value)
}

// CheckContextMatches is Check of each of ms: the first error.
func CheckContextMatches(ms []ContextMatch) error {
	for _, m := range ms {
		if err := m.Check(); err != nil {
			return err
		}
	}
	return nil
}

// DefaultListLimit is the page size of TaskList when the caller gives none.
const DefaultListLimit = 1000

// TaskListActiveParams pages TaskListActive.
type TaskListActiveParams struct {
	AfterID string
	Limit   int
}

// TaskAdvanceParams is one atomic change to a task and its steps. Step
// changes are applied and recorded in order, so one step may move twice
// (error→pending, then pending→in_progress) in one call; the task change,
// when set, comes last, since it follows from its steps.
type TaskAdvanceParams struct {
	TaskID string
	// Lease, when set, fences the write: it is refused with ErrLeaseLost
	// unless the task's OwnerToken is Lease.Token and that lease is live at
	// At.
	Lease *Lease
	// Task, when set, moves the task itself.
	Task *TaskChange
	// NewSteps are steps added to the task (the instances of a for_each
	// step), stored before Steps are applied, so a change may move them.
	// Each is a fresh step: pending, no attempts, results or error, no
	// dependencies; its ID and (task, name) must be new.
	NewSteps []*Step
	Steps    []*StepChange
	At       time.Time
	// Admit, when set, makes the whole change conditional on admitting the
	// task under its concurrency keys (its first dispatch): refused,
	// nothing of the change is written, the task keeps its place in line,
	// and Refused says why.
	Admit *admission.Request
	// Aging is how long a waiter waits to gain a priority level in the
	// admission queues.
	Aging time.Duration
	// Refused is set by TaskAdvance: the admissions it refused, whose
	// changes it did not write. Their transitions are not returned.
	Refused []Refusal
	// Release drops the task's admission entries: set it with the task's
	// move to a terminal state, so its keys' task entries hold exactly
	// while flagged (admission.Tx.Line counts them without joins).
	Release bool
}

// AdmissionNotifier is implemented by drivers whose database several
// coordinators share (PostgreSQL): a coordinator whose task or step ended
// while holding concurrency keys tells the others, whose waiters it may
// free. A driver without it serves one coordinator.
type AdmissionNotifier interface {
	// AdmissionNotify tells every listening coordinator that keys freed a
	// place. from names the sender, so it can ignore its own.
	AdmissionNotify(ctx context.Context, from string, keys []string) error
	// AdmissionListen calls fn with the keys of every notification from
	// another coordinator until ctx ends; also, with nil keys, each time
	// it (re)connects, since notifications sent meanwhile were lost.
	AdmissionListen(ctx context.Context, self string, fn func(keys []string)) error
}

// Refusal is an admission TaskAdvance refused: of the step StepID, or of
// the task when StepID is "".
type Refusal struct {
	StepID string
	admission.Verdict
}

// TaskChange moves a task from one state to another.
type TaskChange struct {
	From     state.State
	To       state.State
	Reason   string
	Metadata json.RawMessage
}

// StepChange moves a step from one state to another, conditional on From and
// ExpectAttempts, and sets the step's attempt bookkeeping.
type StepChange struct {
	StepID   string
	StepName string
	From     state.State
	To       state.State
	// ExpectAttempts must equal the stored attempt count.
	ExpectAttempts int
	// Attempts is the stored attempt count after the change.
	Attempts int
	// MaxAttempts, when positive, replaces the stored limit (a task retry
	// grants fresh attempts this way).
	MaxAttempts int
	// Results, when non-nil, replaces the stored results.
	Results json.RawMessage
	// Error, when non-nil, replaces the stored error. A change to complete
	// clears it.
	Error *StepError
	// NextRetryAt replaces the stored value (zero clears it).
	NextRetryAt time.Time
	Reason      string
	Metadata    json.RawMessage
	// Admit, when set, makes this change (a dispatch: To is in_progress)
	// conditional on admitting the attempt under its step's concurrency
	// keys and rate limits; refused, it is not written.
	Admit *admission.Request
	// Rerun makes the change an operator's rerun of the step: its results
	// and error are cleared (Results and Error are ignored) and its
	// Generation goes up by one, so the next run gets a new idempotency
	// key.
	Rerun bool
	// Signal, when set, is consumed by this change (To must be complete):
	// the stored signal of that ID, which must not be consumed yet (else
	// ErrConflict and nothing is written), or, if none is stored, this
	// one, stored consumed. Either way it records the step and Attempts
	// as its consumer, at the advance's time.
	Signal *Signal
}

// TaskSnapshot is a task with its steps (in template order) and its
// transitions (oldest first), all read at one moment.
type TaskSnapshot struct {
	Task        *Task
	Steps       []*Step
	Transitions []*Transition
}

// TransitionListParams selects transitions of one task.
type TransitionListParams struct {
	TaskID   string
	AfterSeq int64
}
