package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrScheduleExists means a schedule with that name is stored already.
var ErrScheduleExists = errors.New("schedule already exists")

// ScheduleStore is the persistence of cron schedules and of the runs their
// firings created. A schedule's cursor (NextFireAt, with Buffered and
// Paused) moves only by ScheduleAdvance, which is conditional on the
// revision the caller read: of coordinators racing to handle one firing,
// exactly one advances the cursor, and the others learn that they lost.
type ScheduleStore interface {
	// ScheduleCreate stores a new schedule (Revision 1) and returns it; a
	// name or id taken already is ErrScheduleExists, and nothing is
	// written.
	ScheduleCreate(ctx context.Context, sched *Schedule) (*Schedule, error)
	// ScheduleGet returns the schedule of that name, or ErrNotFound.
	ScheduleGet(ctx context.Context, name string) (*Schedule, error)
	// ScheduleList returns every schedule, by name.
	ScheduleList(ctx context.Context) ([]*Schedule, error)
	// ScheduleDelete deletes the schedule of that name and its runs, or
	// returns ErrNotFound. The tasks its firings created are kept.
	ScheduleDelete(ctx context.Context, name string) error
	// ScheduleAdvance writes a schedule's new cursor, buffered firing and
	// paused flag, and stores the runs given, in one transaction, if the
	// schedule's revision is still ExpectRevision; it returns the schedule
	// as stored (revision one higher). Otherwise (another writer got there
	// first) nothing is written and the error wraps ErrConflict; a schedule
	// no longer stored is ErrNotFound. A run with a task for a fire time
	// that has one already is not stored again.
	ScheduleAdvance(ctx context.Context, params *ScheduleAdvanceParams) (*Schedule, error)
	// ScheduleRunRecord stores runs with tasks outside the cursor (a
	// backfill), skipping any fire time that has a task run already, and
	// returns how many it stored.
	ScheduleRunRecord(ctx context.Context, scheduleID string, runs []*ScheduleRun) (int, error)
	// ScheduleRunList returns a schedule's runs, latest fire time first,
	// filtered by ScheduleRunListParams.
	ScheduleRunList(ctx context.Context, params *ScheduleRunListParams) ([]*ScheduleRun, error)
}

// Schedule is a stored cron schedule: what it creates, when, and how far
// its firings have been handled.
type Schedule struct {
	ID   string
	Name string
	// Namespace, TemplateName and TemplateVersion name the template of
	// the tasks it creates; an empty version means the highest at each
	// firing.
	Namespace, TemplateName, TemplateVersion string
	Cron                                     string
	// Timezone is an IANA name; empty is UTC.
	Timezone string
	// Context is the created tasks' context (JSON).
	Context json.RawMessage
	// Overlap is the overlap policy (schedule.Overlap).
	Overlap string
	// CatchupWindow is how late a firing may still run after downtime.
	CatchupWindow time.Duration
	Paused        bool
	// NextFireAt is the cursor: the first fire time not yet handled.
	NextFireAt time.Time
	// Buffered is the fire time of a firing waiting for the previous task
	// to finish (overlap buffer_one); zero when none waits.
	Buffered time.Time
	// Revision counts the schedule's writes; ScheduleAdvance is
	// conditional on it.
	Revision             int64
	CreatedAt, UpdatedAt time.Time
}

// ScheduleRun is what one firing (or a range of skipped ones) did: created
// TaskID, or was skipped for Skipped's reason. A skipped row may stand for
// Count fire times, from FireAt to LastFireAt, so a long downtime is one
// row.
type ScheduleRun struct {
	ScheduleID string
	FireAt     time.Time
	TaskID     string
	Skipped    string
	Count      int
	LastFireAt time.Time
	CreatedAt  time.Time
}

// ScheduleAdvanceParams are the arguments of ScheduleAdvance: the state
// the schedule is to have, conditional on ExpectRevision.
type ScheduleAdvanceParams struct {
	ID             string
	ExpectRevision int64
	NextFireAt     time.Time
	Buffered       time.Time
	Paused         bool
	Runs           []*ScheduleRun
	At             time.Time
}

// ScheduleRunListParams filter ScheduleRunList.
type ScheduleRunListParams struct {
	ScheduleID string
	// From and To bound FireAt, inclusive; zero means unbounded.
	From, To time.Time
	// TasksOnly leaves out skipped runs.
	TasksOnly bool
	// Limit is the most runs returned; zero or less means
	// DefaultListLimit.
	Limit int
}

// ValidateSchedule checks what every driver requires of a new schedule.
func ValidateSchedule(s *Schedule) error {
	switch {
	case s == nil:
		return errors.New("ScheduleCreate: schedule is nil")
	case s.ID == "" || s.Name == "":
		return errors.New("ScheduleCreate: id and name are required")
	case s.Namespace == "" || s.TemplateName == "":
		return fmt.Errorf("ScheduleCreate %s: template namespace and name are required", s.Name)
	case s.Cron == "":
		return fmt.Errorf("ScheduleCreate %s: cron is required", s.Name)
	case s.NextFireAt.IsZero():
		return fmt.Errorf("ScheduleCreate %s: NextFireAt is required", s.Name)
	}
	return nil
}
