// Package schedule is the pure logic of cron schedules: parsing a cron
// expression in a timezone, the fire times it gives, and the decisions a
// coordinator takes when fire times fall due (which run, which are skipped
// as too old for the catch-up window, what the overlap policy does when the
// previous task is unfinished). Nothing here reads a clock or does I/O:
// every function takes "now" as an argument, so tests drive it with a fake
// clock and the coordinator with the real one.
//
// Cron expressions are parsed by github.com/robfig/cron/v3: five fields
// (minute hour day-of-month month day-of-week) with ranges, lists, steps and
// names (MON-FRI, JAN), an optional leading seconds field (six fields), and
// the descriptors @yearly, @monthly, @weekly, @daily, @hourly and
// @every <duration>. Not supported (the parser has no such thing): L (last
// day), W (nearest weekday) and # (nth weekday).
//
// Daylight saving time, as the parser computes it (see the tests): a time
// of day that does not exist on a spring-forward day does not fire that day
// (a 02:30 daily job in Europe/Paris skips the last Sunday of March); a time
// of day that occurs twice on a fall-back day fires twice, an hour apart
// (02:30 CEST and 02:30 CET on the last Sunday of October). Fire times are
// instants, so the two firings have distinct keys.
package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// FieldError is a refusal that names the input field at fault ("cron",
// "timezone", "overlap", ...), so an API can answer InvalidArgument with it.
type FieldError struct {
	Field string
	Err   error
}

// Error names the field first.
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErrorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// parser accepts five fields, or six with seconds first, and descriptors.
// It is immutable after construction, so sharing it is safe.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Spec is a parsed cron expression in a timezone.
type Spec struct {
	expr string
	loc  *time.Location
	cron cron.Schedule
}

// Parse reads a cron expression and an IANA timezone name ("" means UTC).
// Errors are *FieldError naming "cron" or "timezone".
func Parse(expr, timezone string) (*Spec, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, fieldErrorf("cron", "is required (e.g. \"*/5 * * * *\" or @hourly)")
	}
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		return nil, fieldErrorf("cron", "%q: give the timezone in the timezone field, not in the expression", expr)
	}
	loc := time.UTC
	if timezone != "" {
		l, err := time.LoadLocation(timezone)
		if err != nil || timezone == "Local" {
			return nil, fieldErrorf("timezone", "%q is not a known IANA timezone (e.g. Europe/Paris, UTC)", timezone)
		}
		loc = l
	}
	for _, f := range strings.Fields(expr) {
		for _, unsupported := range []string{"L", "W", "#"} {
			if !strings.HasPrefix(f, "@") && strings.Contains(strings.ToUpper(f), unsupported) && !isName(f) {
				return nil, fieldErrorf("cron", "%q: %q is not supported by the cron parser (robfig/cron v3 has no L, W or #)", expr, f)
			}
		}
	}
	sched, err := parser.Parse(expr)
	if err != nil {
		return nil, fieldErrorf("cron", "%q does not parse: %v", expr, err)
	}
	if spec, ok := sched.(*cron.SpecSchedule); ok {
		spec.Location = loc
	}
	s := &Spec{expr: expr, loc: loc, cron: sched}
	// An expression like "0 0 31 2 *" parses but never fires.
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fieldErrorf("cron", "%q never fires", expr)
	}
	return s, nil
}

// cronField is a field of a cron expression and its range.
type cronField struct {
	name   string
	lo, hi int
	every  string // the unit of an @every duration in the field's steps, if any
}

// secondsField, then cronFields, are the fields of a six-field
// expression; a five-field one has cronFields alone.
var (
	secondsField = cronField{"second", 0, 59, "s"}
	cronFields   = [...]cronField{
		{"minute", 0, 59, "m"}, {"hour", 0, 23, "h"}, {"day of month", 1, 31, ""}, {"month", 1, 12, ""}, {"day of week", 0, 6, ""},
	}
)

// checkSteps refuses a step that leaves only its range's start ("*/90" in
// minutes is minute 0 of every hour): the parser takes it, but whoever
// wrote it meant steps that carry over into the next hour or day, which
// cron has none of. Parts that are not plain numbers (names) are left to
// the parser.
func checkSteps(expr string) error {
	fields := strings.Fields(expr)
	if strings.HasPrefix(expr, "@") || len(fields) < 5 {
		return nil
	}
	spec := cronFields[:]
	if len(fields) == 6 {
		spec = append([]cronField{secondsField}, spec...)
	}
	for i, f := range fields {
		fs := spec[i]
		for _, part := range strings.Split(f, ",") {
			rng, stepText, ok := strings.Cut(part, "/")
			if !ok {
				continue
			}
			step, err := strconv.Atoi(stepText)
			if err != nil || step <= 1 {
				continue
			}
			lo, hi := fs.lo, fs.hi
			switch start, end, isRange := strings.Cut(rng, "-"); {
			case rng == "*" || rng == "?":
			case isRange:
				a, errA := strconv.Atoi(start)
				b, errB := strconv.Atoi(end)
				if errA != nil || errB != nil {
					continue
				}
				lo, hi = a, b
			default:
				a, err := strconv.Atoi(rng)
				if err != nil {
					continue
				}
				lo = a
			}
			if step > hi-lo {
				hint := ""
				if fs.every != "" && rng == "*" {
					hint = fmt.Sprintf("; for every %d %ss, use @every %d%s", step, fs.name, step, fs.every)
				}
				return fmt.Errorf("%q in the %s field: a step of %d over %d-%d picks only %s %d, and cron steps do not carry over%s",
					part, fs.name, step, lo, hi, fs.name, lo, hint)
			}
		}
	}
	return nil
}

// ParseNew is Parse for an expression about to be stored: it also refuses
// what parses but cannot say what its writer meant (a step that picks only
// its range's start). Schedules stored before a refusal was added are read
// back with Parse, so they keep firing as they did.
func ParseNew(expr, timezone string) (*Spec, error) {
	s, err := Parse(expr, timezone)
	if err != nil {
		return nil, err
	}
	if err := checkSteps(s.expr); err != nil {
		return nil, fieldErrorf("cron", "%q: %v", s.expr, err)
	}
	return s, nil
}

// isName reports whether a field is made only of month or weekday names
// (JUL, WED) and the punctuation between them, so the L in JUL is not taken
// for the unsupported L operator.
func isName(f string) bool {
	names := []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
		"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
	rest := strings.ToUpper(f)
	for _, n := range names {
		rest = strings.ReplaceAll(rest, n, "")
	}
	return !strings.ContainsAny(rest, "LW#")
}

// Expr is the expression as given (trimmed).
func (s *Spec) Expr() string { return s.expr }

// Location is the timezone the expression is read in.
func (s *Spec) Location() *time.Location { return s.loc }

// Next returns the first fire time strictly after t, in UTC; zero if there
// is none.
func (s *Spec) Next(t time.Time) time.Time {
	n := s.cron.Next(t.In(s.loc))
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// NextN returns up to n fire times at or after t, in order.
func (s *Spec) NextN(t time.Time, n int) []time.Time {
	var out []time.Time
	for at := s.Next(t.Add(-time.Nanosecond)); !at.IsZero() && len(out) < n; at = s.Next(at) {
		out = append(out, at)
	}
	return out
}

// Between returns the fire times in [from, to], in order, at most limit of
// them (limit ≤ 0: no limit).
func (s *Spec) Between(from, to time.Time, limit int) []time.Time {
	var out []time.Time
	for at := s.Next(from.Add(-time.Nanosecond)); !at.IsZero() && !at.After(to); at = s.Next(at) {
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, at)
	}
	return out
}

// Overlap says what a firing does while the schedule's previous task is
// unfinished.
type Overlap string

// The overlap policies.
const (
	// OverlapSkip records the firing as skipped.
	OverlapSkip Overlap = "skip"
	// OverlapAllow creates the task anyway.
	OverlapAllow Overlap = "allow"
	// OverlapCancelPrevious cancels the previous task, then creates.
	OverlapCancelPrevious Overlap = "cancel_previous"
	// OverlapBufferOne keeps the firing waiting until the previous task
	// finishes; at most one waits, later ones are skipped.
	OverlapBufferOne Overlap = "buffer_one"
)

// ParseOverlap reads a policy; "" is skip, the safe default.
func ParseOverlap(s string) (Overlap, error) {
	switch o := Overlap(s); o {
	case "":
		return OverlapSkip, nil
	case OverlapSkip, OverlapAllow, OverlapCancelPrevious, OverlapBufferOne:
		return o, nil
	}
	return "", fieldErrorf("overlap", "%q is not a policy (want skip, allow, cancel_previous or buffer_one)", s)
}

// Action is what to do with one due firing.
type Action int

// The actions Decide returns.
const (
	// Create creates the firing's task now.
	Create Action = iota + 1
	// Skip records the firing as skipped (overlap).
	Skip
	// CancelThenCreate cancels the previous task, then creates.
	CancelThenCreate
	// Buffer keeps the firing waiting for the previous task to finish.
	Buffer
)

// String names the action.
func (a Action) String() string {
	switch a {
	case Create:
		return "create"
	case Skip:
		return "skip"
	case CancelThenCreate:
		return "cancel_then_create"
	case Buffer:
		return "buffer"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decide applies the overlap policy to a due firing: previousRunning is
// whether the schedule's last task is unfinished (pending or in progress),
// buffered whether a firing already waits (buffer_one).
func Decide(policy Overlap, previousRunning, buffered bool) Action {
	if !previousRunning {
		// A firing left waiting (buffer_one) is started by the caller as
		// soon as the previous task finishes, before any new firing is
		// decided, so buffered does not matter here.
		return Create
	}
	switch policy {
	case OverlapAllow:
		return Create
	case OverlapCancelPrevious:
		return CancelThenCreate
	case OverlapBufferOne:
		if buffered {
			return Skip
		}
		return Buffer
	}
	return Skip
}

// Due is the outcome of Plan: what to do with the fire times from the
// cursor up to now.
type Due struct {
	// Run are the fire times inside the catch-up window, oldest first:
	// each is to be fired (subject to the overlap policy).
	Run []time.Time
	// Missed counts the fire times older than the window; MissedFirst
	// and MissedLast are the first and last of them.
	Missed                  int
	MissedFirst, MissedLast time.Time
	// Next is the cursor once Missed are recorded as skipped: the first
	// fire time not skipped (Run[0] if any, else the next after now).
	Next time.Time
}

// MaxCatchUp bounds the fire times Plan returns to run in one call, so a
// fast schedule behind by a long window is worked off in slices.
const MaxCatchUp = 1000

// Plan decides which fire times from cursor (the first not yet handled) up
// to now run and which are too old: a fire time runs if now minus it is at
// most window; older ones are missed (skipped and counted, never run).
func Plan(s *Spec, cursor, now time.Time, window time.Duration) Due {
	var d Due
	at := cursor
	oldest := now.Add(-window)
	for ; !at.IsZero() && at.Before(oldest); at = s.Next(at) {
		if d.Missed == 0 {
			d.MissedFirst = at
		}
		d.Missed++
		d.MissedLast = at
	}
	d.Next = at
	for ; !at.IsZero() && !at.After(now) && len(d.Run) < MaxCatchUp; at = s.Next(at) {
		d.Run = append(d.Run, at)
	}
	return d
}

// Missed counts the fire times in [from, to) and returns the first after
// them: what resuming a paused schedule skips. from and to are instants.
func Missed(s *Spec, from, to time.Time) (count int, first, last, next time.Time) {
	at := from
	for ; !at.IsZero() && at.Before(to); at = s.Next(at) {
		if count == 0 {
			first = at
		}
		count++
		last = at
	}
	return count, first, last, at
}

// IdempotencyKey is the key of the task a firing creates: the same for every
// coordinator and every retry of the firing, so the task is created once.
func IdempotencyKey(scheduleID string, fireAt time.Time) string {
	return "schedule:" + scheduleID + ":" + fireAt.UTC().Format(time.RFC3339)
}

// ErrBackfillRange is returned by CheckRange when from is after to.
var ErrBackfillRange = errors.New("from is after to")

// CheckRange validates a backfill range.
func CheckRange(from, to time.Time) error {
	if from.IsZero() {
		return fieldErrorf("from", "is required")
	}
	if to.IsZero() {
		return fieldErrorf("to", "is required")
	}
	if from.After(to) {
		return &FieldError{Field: "from", Err: fmt.Errorf("%s: %w %s", from.UTC().Format(time.RFC3339), ErrBackfillRange, to.UTC().Format(time.RFC3339))}
	}
	return nil
}
