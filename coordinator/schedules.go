package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/schedule"
	"github.com/tasker-go/tasker/store"
)

// Schedules: every coordinator runs one scheduler loop over all stored
// schedules. It sleeps on one timer until the earliest cursor (capped at
// the reload interval, which is how it learns of schedules created, paused
// or deleted through another coordinator), and a local change kicks it at
// once. A due firing creates its task through the normal create path with
// the idempotency key schedule.IdempotencyKey(id, fire time) BEFORE the
// cursor moves, and the cursor moves by a write conditional on the
// schedule's revision. So:
//   - a coordinator killed between the two re-fires the same time after its
//     restart and the key collapses the create onto the task it made;
//   - of several coordinators handling the same firing, all create (one
//     task, by the key), one advances the cursor, the others see a conflict
//     and re-read the schedule.

// Default schedule settings.
const (
	defaultCatchupWindow  = time.Hour
	defaultScheduleReload = 5 * time.Second
	// minCatchupWindow is how late a fire time may run whatever the
	// schedule's window: a timer that fires a little late on a busy
	// machine is not downtime, so a window of 0 still runs each firing.
	minCatchupWindow = 2 * time.Second
	// maxBackfill bounds the fire times one BackfillSchedule may create.
	maxBackfill = 10_000
)

// Skip reasons stored on runs and used as metric outcomes.
const (
	skippedOverlap    = "overlap"
	skippedBufferFull = "buffer_full"
	skippedCatchup    = "catchup_window"
	skippedPaused     = "paused"
	skippedFailed     = "failed"
)

// scheduler fires stored schedules.
type scheduler struct {
	e      *engine
	peers  *peers
	log    *slog.Logger
	reload time.Duration
	// kick wakes the loop for a pass now (buffered: a kick while one is
	// pending is the same kick).
	kick    chan struct{}
	firings *prometheus.CounterVec

	mu sync.Mutex // protects watching
	// watching holds the task ids whose finish a buffered firing waits
	// for, with the function that stops the watch.
	watching map[string]func()
}

func newScheduler(e *engine, p *peers, reload time.Duration, reg prometheus.Registerer) *scheduler {
	s := &scheduler{
		e: e, peers: p, log: e.log.With("component", "scheduler"), reload: reload,
		kick: make(chan struct{}, 1), watching: map[string]func(){},
		firings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_schedule_firings_total",
			Help: "Fire times of schedules handled, by schedule and outcome (created, backfilled, buffered, skipped_overlap, skipped_buffer_full, skipped_catchup_window, skipped_paused, skipped_failed). Counted once across coordinators: by the one whose write moved the schedule.",
		}, []string{"schedule", "outcome"}),
	}
	reg.MustRegister(s.firings)
	return s
}

// wake asks the loop for a pass now.
func (s *scheduler) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run is the loop; it returns when ctx ends.
func (s *scheduler) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	defer s.unwatchAll()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
		}
		wait := s.pass(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// pass handles every schedule that is due and returns how long to sleep.
func (s *scheduler) pass(ctx context.Context) time.Duration {
	wait := s.reload
	list, err := s.e.store.ScheduleList(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("could not list schedules", "err", err)
		}
		return wait
	}
	for _, sc := range list {
		if ctx.Err() != nil {
			return wait
		}
		if sc.Paused {
			continue
		}
		next, err := s.handle(ctx, sc)
		if err != nil {
			if ctx.Err() == nil && !s.e.draining.Load() {
				s.log.Warn("schedule firing failed; retrying", "schedule", sc.Name, "err", err)
			}
			wait = min(wait, time.Second)
			continue
		}
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(s.e.now()), 0))
		}
	}
	return wait
}

// handle works off a schedule's due firings and returns its next fire time
// (zero: not to be fired by this loop, e.g. deleted or paused meanwhile).
func (s *scheduler) handle(ctx context.Context, sc *store.Schedule) (time.Time, error) {
	spec, err := schedule.Parse(sc.Cron, sc.Timezone)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored schedule %s: %w", sc.Name, err)
	}
	policy, err := schedule.ParseOverlap(sc.Overlap)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored schedule %s: %w", sc.Name, err)
	}
	for ctx.Err() == nil {
		if sc.Paused {
			return time.Time{}, nil
		}
		now := s.e.now()
		next, err := s.step(ctx, sc, spec, policy, now)
		switch {
		case errors.Is(err, store.ErrConflict):
			// Another coordinator (or a pause) moved it: read it again.
			if sc, err = s.e.store.ScheduleGet(ctx, sc.Name); errors.Is(err, store.ErrNotFound) {
				return time.Time{}, nil
			} else if err != nil {
				return time.Time{}, err
			}
			continue
		case errors.Is(err, store.ErrNotFound):
			return time.Time{}, nil
		case err != nil:
			return time.Time{}, err
		}
		if next == nil {
			return sc.NextFireAt, nil
		}
		sc = next
	}
	return time.Time{}, ctx.Err()
}

// step takes one decision for a schedule at now and writes it; it returns
// the schedule as written, or nil when there is nothing to do before its
// cursor.
func (s *scheduler) step(ctx context.Context, sc *store.Schedule, spec *schedule.Spec, policy schedule.Overlap, now time.Time) (*store.Schedule, error) {
	advance := func(p store.ScheduleAdvanceParams, outcome string, n int) (*store.Schedule, error) {
		p.ID, p.ExpectRevision, p.At = sc.ID, sc.Revision, now
		if p.NextFireAt.IsZero() {
			p.NextFireAt = sc.NextFireAt
		}
		out, err := s.e.store.ScheduleAdvance(ctx, &p)
		if err == nil && n > 0 {
			s.firings.WithLabelValues(sc.Name, outcome).Add(float64(n))
		}
		if errors.Is(err, store.ErrConflict) {
			// The task this firing created exists whoever moved the
			// schedule (another coordinator firing the same time, whose
			// run names the same task, or a pause): its run is recorded
			// if no run with a task has that fire time yet, so no task
			// of the schedule is left without its run.
			var mine []*store.ScheduleRun
			for _, r := range p.Runs {
				if r.TaskID != "" {
					mine = append(mine, r)
				}
			}
			if len(mine) > 0 {
				if _, rerr := s.e.store.ScheduleRunRecord(ctx, sc.ID, mine); rerr != nil && !errors.Is(rerr, store.ErrNotFound) {
					return nil, errors.Join(err, rerr)
				}
			}
		}
		return out, err
	}

	// A firing waiting for the previous task goes first once that one is
	// done.
	if !sc.Buffered.IsZero() {
		running, err := s.previousRunning(ctx, sc)
		if err != nil {
			return nil, err
		}
		if !running {
			run, outcome, err := s.fire(ctx, sc, sc.Buffered)
			if err != nil {
				return nil, err
			}
			return advance(store.ScheduleAdvanceParams{Runs: []*store.ScheduleRun{run}}, outcome, 1)
		}
	}
	if sc.NextFireAt.After(now) {
		return nil, nil
	}
	// Planning walks every fire time from the cursor to now; it is needed
	// only when the cursor fell behind the window, and then once.
	window := max(sc.CatchupWindow, minCatchupWindow)
	if sc.NextFireAt.Before(now.Add(-window)) {
		due := schedule.Plan(spec, sc.NextFireAt, now, window)
		if due.Missed > 0 {
			s.log.Info("schedule missed fire times older than its catch-up window", "schedule", sc.Name,
				"missed", due.Missed, "first", due.MissedFirst, "last", due.MissedLast)
			return advance(store.ScheduleAdvanceParams{
				NextFireAt: due.Next, Buffered: sc.Buffered,
				Runs: []*store.ScheduleRun{{FireAt: due.MissedFirst, LastFireAt: due.MissedLast, Count: due.Missed, Skipped: skippedCatchup}},
			}, "skipped_"+skippedCatchup, due.Missed)
		}
	}
	fireAt := sc.NextFireAt
	nextFire := spec.Next(fireAt)
	running := false
	if policy != schedule.OverlapAllow {
		var err error
		if running, err = s.previousRunning(ctx, sc); err != nil {
			return nil, err
		}
	}
	switch schedule.Decide(policy, running, !sc.Buffered.IsZero()) {
	case schedule.Skip:
		why := skippedOverlap
		if policy == schedule.OverlapBufferOne {
			why = skippedBufferFull
		}
		return advance(store.ScheduleAdvanceParams{
			NextFireAt: nextFire, Buffered: sc.Buffered,
			Runs: []*store.ScheduleRun{{FireAt: fireAt, Skipped: why, Count: 1}},
		}, "skipped_"+why, 1)
	case schedule.Buffer:
		return advance(store.ScheduleAdvanceParams{NextFireAt: nextFire, Buffered: fireAt}, "buffered", 1)
	case schedule.CancelThenCreate:
		if err := s.cancelPrevious(ctx, sc, fireAt); err != nil {
			return nil, err
		}
	}
	run, outcome, err := s.fire(ctx, sc, fireAt)
	if err != nil {
		return nil, err
	}
	return advance(store.ScheduleAdvanceParams{NextFireAt: nextFire, Buffered: sc.Buffered, Runs: []*store.ScheduleRun{run}}, outcome, 1)
}

// fire creates the task of one fire time, idempotently, and returns the
// run to record. A create refused for good (the template was removed, the
// context no longer meets its schema) is recorded as a skipped run rather
// than retried for ever; a transient failure is returned.
func (s *scheduler) fire(ctx context.Context, sc *store.Schedule, fireAt time.Time) (*store.ScheduleRun, string, error) {
	v, _, err := s.e.createTask(ctx, &createParams{
		namespace: sc.Namespace, name: sc.TemplateName, version: sc.TemplateVersion, context: sc.Context,
		idempotencyKey: schedule.IdempotencyKey(sc.ID, fireAt),
	})
	if err != nil {
		switch status.Code(toStatus(err)) {
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.ResourceExhausted:
			s.log.Warn("schedule firing refused; recorded as skipped", "schedule", sc.Name, "fire_time", fireAt, "err", err)
			return &store.ScheduleRun{FireAt: fireAt, Skipped: skippedFailed + ": " + err.Error(), Count: 1}, "skipped_" + skippedFailed, nil
		}
		return nil, "", fmt.Errorf("schedule %s fire time %s: %w", sc.Name, fireAt.Format(time.RFC3339), err)
	}
	return &store.ScheduleRun{FireAt: fireAt, TaskID: v.task.ID}, "created", nil
}

// previousTask returns the task of the schedule's latest run that created
// one, or nil.
func (s *scheduler) previousTask(ctx context.Context, sc *store.Schedule) (*store.Task, error) {
	runs, err := s.e.store.ScheduleRunList(ctx, &store.ScheduleRunListParams{ScheduleID: sc.ID, TasksOnly: true, Limit: 1})
	if err != nil || len(runs) == 0 {
		return nil, err
	}
	t, err := s.e.store.TaskGet(ctx, runs[0].TaskID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return t, err
}

// previousRunning reports whether the schedule's previous task is
// unfinished. While a buffered firing waits on a task this coordinator
// runs, a watch on it wakes the loop when it finishes; otherwise the
// reload interval brings the next look.
func (s *scheduler) previousRunning(ctx context.Context, sc *store.Schedule) (bool, error) {
	t, err := s.previousTask(ctx, sc)
	if err != nil || t == nil {
		return false, err
	}
	if t.State.Terminal() {
		return false, nil
	}
	if !sc.Buffered.IsZero() || sc.Overlap == string(schedule.OverlapBufferOne) {
		s.watchFinish(t.ID)
	}
	return true, nil
}

// watchFinish wakes the loop when a task this coordinator runs commits a
// transition (its finish among them), once.
func (s *scheduler) watchFinish(taskID string) {
	if s.e.lookup(taskID) == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.watching[taskID]; ok {
		return
	}
	w, stop := s.e.hub.subscribe(taskID)
	done := make(chan struct{})
	s.watching[taskID] = func() { stop(); close(done) }
	s.e.bg.goFn(func() {
		for {
			select {
			case <-done:
				return
			case <-s.e.ctx.Done():
				return
			case ev := <-w.ch:
				finished := ev.transitions == nil
				for _, t := range ev.transitions {
					finished = finished || (t.StepID == "" && t.To.Terminal())
				}
				if finished {
					s.mu.Lock()
					if unwatch, ok := s.watching[taskID]; ok {
						delete(s.watching, taskID)
						unwatch()
					}
					s.mu.Unlock()
					s.wake()
					return
				}
			}
		}
	})
}

func (s *scheduler) unwatchAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, unwatch := range s.watching {
		delete(s.watching, id)
		unwatch()
	}
}

// cancelPrevious cancels the schedule's unfinished previous task, on
// whichever coordinator owns it.
func (s *scheduler) cancelPrevious(ctx context.Context, sc *store.Schedule, fireAt time.Time) error {
	t, err := s.previousTask(ctx, sc)
	if err != nil || t == nil || t.State.Terminal() {
		return err
	}
	reason := "cancelled by schedule " + sc.Name + " (overlap cancel_previous) for its firing at " + fireAt.UTC().Format(time.RFC3339)
	_, err = s.e.cancelTask(ctx, t.ID, reason)
	var owned *store.OwnedError
	if errors.As(err, &owned) {
		_, err = forward(ctx, s.peers, owned, func(ctx context.Context, c coordinatorv1.CoordinatorServiceClient) (*coordinatorv1.CancelTaskResponse, error) {
			return c.CancelTask(ctx, &coordinatorv1.CancelTaskRequest{Id: t.ID, Reason: reason})
		})
	}
	if status.Code(toStatus(err)) == codes.FailedPrecondition {
		return nil // it finished meanwhile
	}
	return err
}

// scheduleParams is a validated CreateSchedule request.
type scheduleParams struct {
	sched *store.Schedule
	spec  *schedule.Spec
}

// createSchedule stores a schedule whose first fire time is the first
// after now, and wakes the loop.
func (s *scheduler) createSchedule(ctx context.Context, p *scheduleParams) (*store.Schedule, error) {
	now := s.e.now()
	p.sched.ID = uuid.Must(uuid.NewV7()).String()
	p.sched.NextFireAt = p.spec.Next(now)
	p.sched.CreatedAt, p.sched.UpdatedAt = now, now
	out, err := s.e.store.ScheduleCreate(ctx, p.sched)
	if errors.Is(err, store.ErrScheduleExists) {
		return nil, &codedError{codes.AlreadyExists, fmt.Errorf("name: schedule %q exists already", p.sched.Name)}
	}
	if err != nil {
		return nil, err
	}
	s.wake()
	return out, nil
}

// setPaused pauses or resumes a schedule. Resuming starts from now: the
// fire times between the cursor and now are recorded as one skipped run
// and counted. It returns the schedule and how many were skipped.
func (s *scheduler) setPaused(ctx context.Context, name string, paused bool) (*store.Schedule, int, error) {
	for {
		sc, err := s.e.store.ScheduleGet(ctx, name)
		if err != nil {
			return nil, 0, err
		}
		if sc.Paused == paused {
			return sc, 0, nil
		}
		now := s.e.now()
		p := &store.ScheduleAdvanceParams{
			ID: sc.ID, ExpectRevision: sc.Revision, NextFireAt: sc.NextFireAt, Buffered: sc.Buffered, Paused: paused, At: now,
		}
		skipped := 0
		if !paused {
			spec, err := schedule.Parse(sc.Cron, sc.Timezone)
			if err != nil {
				return nil, 0, fmt.Errorf("stored schedule %s: %w", sc.Name, err)
			}
			from := sc.NextFireAt
			// A firing of the cursor's time under way when the pause
			// landed may have recorded its task since: it is not missed.
			ran, err := s.e.store.ScheduleRunList(ctx, &store.ScheduleRunListParams{
				ScheduleID: sc.ID, From: from, To: from, TasksOnly: true, Limit: 1,
			})
			if err != nil {
				return nil, 0, err
			}
			if len(ran) > 0 {
				from = spec.Next(from)
			}
			n, first, last, next := schedule.Missed(spec, from, now)
			p.NextFireAt = next
			if n > 0 {
				skipped = n
				p.Runs = []*store.ScheduleRun{{FireAt: first, LastFireAt: last, Count: n, Skipped: skippedPaused}}
			}
		}
		out, err := s.e.store.ScheduleAdvance(ctx, p)
		if errors.Is(err, store.ErrConflict) {
			continue // a firing moved it meanwhile; decide again
		}
		if err != nil {
			return nil, 0, err
		}
		if skipped > 0 {
			s.firings.WithLabelValues(sc.Name, "skipped_"+skippedPaused).Add(float64(skipped))
		}
		s.wake()
		return out, skipped, nil
	}
}

// backfill creates the tasks of the fire times in [from, to] before the
// schedule's cursor that have no task run, and records their runs. Fire
// times at or after the cursor are left to the loop, which would fire them
// anyway. It returns the runs it recorded and how many had a task already.
func (s *scheduler) backfill(ctx context.Context, sc *store.Schedule, from, to time.Time) ([]*store.ScheduleRun, int, error) {
	spec, err := schedule.Parse(sc.Cron, sc.Timezone)
	if err != nil {
		return nil, 0, fmt.Errorf("stored schedule %s: %w", sc.Name, err)
	}
	if !to.Before(sc.NextFireAt) {
		to = sc.NextFireAt.Add(-time.Nanosecond)
	}
	times := spec.Between(from, to, maxBackfill+1)
	if len(times) > maxBackfill {
		return nil, 0, invalidf("from: the range holds more than %d fire times; backfill it in parts", maxBackfill)
	}
	if len(times) == 0 {
		return nil, 0, nil
	}
	have, err := s.e.store.ScheduleRunList(ctx, &store.ScheduleRunListParams{
		ScheduleID: sc.ID, From: times[0], To: times[len(times)-1], TasksOnly: true, Limit: len(times) + 1,
	})
	if err != nil {
		return nil, 0, err
	}
	done := map[int64]bool{}
	for _, r := range have {
		done[r.FireAt.UnixNano()] = true
	}
	var runs []*store.ScheduleRun
	existing := 0
	for _, at := range times {
		if done[at.UnixNano()] {
			existing++
			continue
		}
		run, _, err := s.fire(ctx, sc, at)
		if err != nil {
			return nil, 0, err
		}
		if run.TaskID == "" {
			return nil, 0, invalidf("name: schedule %s cannot create its task: %s", sc.Name, run.Skipped)
		}
		runs = append(runs, run)
	}
	if len(runs) == 0 {
		return nil, existing, nil
	}
	n, err := s.e.store.ScheduleRunRecord(ctx, sc.ID, runs)
	if err != nil {
		return nil, 0, err
	}
	s.firings.WithLabelValues(sc.Name, "backfilled").Add(float64(n))
	return runs, existing, nil
}
