package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/schedule"
	"github.com/tasker-go/tasker/store"
)

const scheduledTemplate = `
namespace: test
name: scheduled
version: 1.0.0
context_schema:
  type: object
  properties:
    region: {type: string}
steps:
  - name: only
    handler: noop
`

// blockingTemplate's step runs the "hold" handler, which the test releases.
const blockingTemplate = `
namespace: test
name: blocking
version: 1.0.0
steps:
  - name: only
    handler: hold
`

// everySecond fires at every second (the optional seconds field).
const everySecond = "* * * * * *"

func (h *harness) createSchedule(req *coordinatorv1.CreateScheduleRequest) *coordinatorv1.Schedule {
	h.t.Helper()
	resp, err := h.client.CreateSchedule(h.ctx, req)
	require.NoError(h.t, err)
	return resp.GetSchedule()
}

func (h *harness) getSchedule(name string) *coordinatorv1.GetScheduleResponse {
	h.t.Helper()
	resp, err := h.client.GetSchedule(h.ctx, &coordinatorv1.GetScheduleRequest{Name: name, Runs: 1000})
	require.NoError(h.t, err)
	return resp
}

// taskRuns are a schedule's runs that created tasks, by fire time.
func taskRuns(resp *coordinatorv1.GetScheduleResponse) map[time.Time]string {
	out := map[time.Time]string{}
	for _, r := range resp.GetRuns() {
		if r.GetTaskId() != "" {
			out[r.GetFireTime().AsTime()] = r.GetTaskId()
		}
	}
	return out
}

// waitRuns waits until the schedule has at least n task runs and returns
// the schedule then.
func (h *harness) waitRuns(name string, n int) *coordinatorv1.GetScheduleResponse {
	h.t.Helper()
	var last *coordinatorv1.GetScheduleResponse
	require.Eventually(h.t, func() bool {
		resp, err := h.client.GetSchedule(h.ctx, &coordinatorv1.GetScheduleRequest{Name: name, Runs: 1000})
		if err != nil {
			return false
		}
		last = resp
		return len(taskRuns(resp)) >= n
	}, 30*time.Second, 20*time.Millisecond)
	return last
}

// requireTaskOfFireTime checks the task of a fire time carries the
// firing's idempotency key.
func (h *harness) requireTaskOfFireTime(sched *coordinatorv1.Schedule, at time.Time, taskID string) {
	h.t.Helper()
	key := schedule.IdempotencyKey(sched.GetId(), at)
	resp, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{Search: key})
	require.NoError(h.t, err)
	require.Len(h.t, resp.GetTasks(), 1, "tasks with key %s", key)
	require.Equal(h.t, taskID, resp.GetTasks()[0].GetId())
}

func TestScheduleValidation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(scheduledTemplate)
	ok := func() *coordinatorv1.CreateScheduleRequest {
		return &coordinatorv1.CreateScheduleRequest{Name: "ok", Namespace: "test", Template: "scheduled", Cron: "*/5 * * * *"}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*coordinatorv1.CreateScheduleRequest)
		code  codes.Code
		field string
	}{
		{"no name", func(r *coordinatorv1.CreateScheduleRequest) { r.Name = "" }, codes.InvalidArgument, "name:"},
		{"name with a slash", func(r *coordinatorv1.CreateScheduleRequest) { r.Name = "a/b" }, codes.InvalidArgument, "name:"},
		{"cron does not parse", func(r *coordinatorv1.CreateScheduleRequest) { r.Cron = "every day" }, codes.InvalidArgument, "cron:"},
		{"cron with L", func(r *coordinatorv1.CreateScheduleRequest) { r.Cron = "0 0 L * *" }, codes.InvalidArgument, "cron:"},
		{"cron step that picks one value", func(r *coordinatorv1.CreateScheduleRequest) { r.Cron = "*/90 * * * *" }, codes.InvalidArgument, "use @every 90m"},
		{"no cron", func(r *coordinatorv1.CreateScheduleRequest) { r.Cron = "" }, codes.InvalidArgument, "cron:"},
		{"unknown timezone", func(r *coordinatorv1.CreateScheduleRequest) { r.Timezone = "Europe/Atlantis" }, codes.InvalidArgument, "timezone:"},
		{"unknown template", func(r *coordinatorv1.CreateScheduleRequest) { r.Template = "nope" }, codes.InvalidArgument, "template:"},
		{"unknown version", func(r *coordinatorv1.CreateScheduleRequest) { r.Version = "9.9.9" }, codes.InvalidArgument, "template:"},
		{"bad overlap", func(r *coordinatorv1.CreateScheduleRequest) { r.Overlap = "queue" }, codes.InvalidArgument, "overlap:"},
		{"negative catch-up window", func(r *coordinatorv1.CreateScheduleRequest) { r.CatchupWindow = durationpb.New(-time.Second) },
			codes.InvalidArgument, "catchup_window:"},
		{"context fails the schema", func(r *coordinatorv1.CreateScheduleRequest) {
			r.Context, _ = structpb.NewStruct(map[string]any{"region": 7})
		}, codes.InvalidArgument, "context:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := ok()
			tc.edit(req)
			_, err := h.client.CreateSchedule(h.ctx, req)
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			require.Contains(t, status.Convert(err).Message(), tc.field)
		})
	}
	list, err := h.client.ListSchedules(h.ctx, &coordinatorv1.ListSchedulesRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetSchedules(), "a refused request stores nothing")

	h.createSchedule(ok())
	_, err = h.client.CreateSchedule(h.ctx, ok())
	require.Equal(t, codes.AlreadyExists, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "name:")

	for _, tc := range []struct {
		name     string
		from, to time.Time
		field    string
	}{
		{"from after to", time.Now(), time.Now().Add(-time.Hour), "from:"},
		{"no from", time.Time{}, time.Now(), "from:"},
		{"no to", time.Now(), time.Time{}, "to:"},
	} {
		req := &coordinatorv1.BackfillScheduleRequest{Name: "ok"}
		if !tc.from.IsZero() {
			req.From = timestamppb.New(tc.from)
		}
		if !tc.to.IsZero() {
			req.To = timestamppb.New(tc.to)
		}
		_, err := h.client.BackfillSchedule(h.ctx, req)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%s: %v", tc.name, err)
		require.Contains(t, status.Convert(err).Message(), tc.field, tc.name)
	}
	for _, call := range []func() error{
		func() error {
			_, err := h.client.GetSchedule(h.ctx, &coordinatorv1.GetScheduleRequest{Name: "missing"})
			return err
		},
		func() error {
			_, err := h.client.PauseSchedule(h.ctx, &coordinatorv1.PauseScheduleRequest{Name: "missing"})
			return err
		},
		func() error {
			_, err := h.client.ResumeSchedule(h.ctx, &coordinatorv1.ResumeScheduleRequest{Name: "missing"})
			return err
		},
		func() error {
			_, err := h.client.DeleteSchedule(h.ctx, &coordinatorv1.DeleteScheduleRequest{Name: "missing"})
			return err
		},
	} {
		require.Equal(t, codes.NotFound, status.Code(call()))
	}
}

// A schedule firing every second creates one task per fire time, each
// with the firing's idempotency key, and GetSchedule shows what comes and
// what was; pausing stops it, and resuming skips what was missed.
func TestScheduleFiresPausesAndResumes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	st := openSQLite(t)
	h := serveCoordinator(t, coordinator.Config{Store: st, Registerer: reg}, nil)
	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), nil)
	h.apply(scheduledTemplate)
	ctxStruct, err := structpb.NewStruct(map[string]any{"region": "eu"})
	require.NoError(t, err)
	sched := h.createSchedule(&coordinatorv1.CreateScheduleRequest{
		Name: "tick", Namespace: "test", Template: "scheduled", Cron: everySecond, Timezone: "Europe/Paris",
		Context: ctxStruct, Overlap: "allow",
	})
	require.Equal(t, time.Hour, sched.GetCatchupWindow().AsDuration(), "the default window")
	created := sched.GetCreateTime().AsTime()
	require.True(t, sched.GetNextFireTime().AsTime().After(created))

	resp := h.waitRuns("tick", 3)
	runs := taskRuns(resp)
	for at, id := range runs {
		h.requireTaskOfFireTime(sched, at, id)
		task := h.get(id)
		require.Equal(t, "eu", task.GetContext().GetFields()["region"].GetStringValue())
	}
	next := resp.GetNextFireTimes()
	require.Len(t, next, 5)
	for i := 1; i < len(next); i++ {
		require.Equal(t, time.Second, next[i].AsTime().Sub(next[i-1].AsTime()))
	}
	require.GreaterOrEqual(t, metricValue(t, reg, "tasker_schedule_firings_total", "schedule", "tick", "outcome", "created"), 3.0)

	paused, err := h.client.PauseSchedule(h.ctx, &coordinatorv1.PauseScheduleRequest{Name: "tick"})
	require.NoError(t, err)
	require.True(t, paused.GetSchedule().GetPaused())
	cursor := paused.GetSchedule().GetNextFireTime().AsTime()
	// Let two fire times pass while paused (a condition on the clock).
	require.Eventually(t, func() bool { return time.Now().After(cursor.Add(2 * time.Second)) }, 10*time.Second, 10*time.Millisecond)
	// A firing of the cursor's time already under way when the pause
	// landed may still record its task; nothing after it fires.
	before := taskRuns(h.getSchedule("tick"))
	for at := range before {
		require.False(t, at.After(cursor), "fire time %s ran while paused", at)
	}

	resumed, err := h.client.ResumeSchedule(h.ctx, &coordinatorv1.ResumeScheduleRequest{Name: "tick"})
	require.NoError(t, err)
	require.False(t, resumed.GetSchedule().GetPaused())
	require.GreaterOrEqual(t, resumed.GetSkipped(), int64(2))
	require.True(t, resumed.GetSchedule().GetNextFireTime().AsTime().After(cursor.Add(2*time.Second)))
	var pausedRun *coordinatorv1.ScheduleRun
	for _, r := range h.getSchedule("tick").GetRuns() {
		if r.GetSkipped() == "paused" {
			pausedRun = r
		}
	}
	require.NotNil(t, pausedRun)
	require.Equal(t, cursor, pausedRun.GetFireTime().AsTime())
	require.Equal(t, resumed.GetSkipped(), pausedRun.GetCount())
	require.Equal(t, float64(resumed.GetSkipped()),
		metricValue(t, reg, "tasker_schedule_firings_total", "schedule", "tick", "outcome", "skipped_paused"))
	h.waitRuns("tick", len(before)+1)

	_, err = h.client.DeleteSchedule(h.ctx, &coordinatorv1.DeleteScheduleRequest{Name: "tick"})
	require.NoError(t, err)
	_, err = h.client.GetSchedule(h.ctx, &coordinatorv1.GetScheduleRequest{Name: "tick"})
	require.Equal(t, codes.NotFound, status.Code(err))
	// The tasks it created are kept.
	for _, id := range runs {
		h.get(id)
	}
}

// A schedule's runs say how the tasks they created stand now, and which
// of those tasks retention has deleted since.
func TestScheduleRunsShowTheirTasks(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	h := serveCoordinator(t, coordinator.Config{Store: st}, nil)
	h.apply(scheduledTemplate)
	h.createSchedule(&coordinatorv1.CreateScheduleRequest{
		Name: "shown", Namespace: "test", Template: "scheduled", Cron: everySecond, Overlap: "allow",
	})
	// No executor yet: the first task waits, pending.
	first := ""
	for _, id := range taskRuns(h.waitRuns("shown", 1)) {
		first = id
	}
	run := func(id string) *coordinatorv1.ScheduleRun {
		t.Helper()
		for _, r := range h.getSchedule("shown").GetRuns() {
			if r.GetTaskId() == id {
				return r
			}
		}
		t.Fatalf("no run created task %s", id)
		return nil
	}
	require.Equal(t, coordinatorv1.State_STATE_PENDING, run(first).GetTaskState())
	require.False(t, run(first).GetTaskPruned())

	runExecutor(h, executor.Config{ID: "exec-1", Capacity: 4}, listen(t), nil)
	h.waitState(first, coordinatorv1.State_STATE_COMPLETE)
	require.Equal(t, coordinatorv1.State_STATE_COMPLETE, run(first).GetTaskState())

	// Retention deletes finished tasks once their events are pruned (all
	// but the newest's); their runs stay, marked.
	h.waitRuns("shown", 2)
	_, err := h.client.PauseSchedule(h.ctx, &coordinatorv1.PauseScheduleRequest{Name: "shown"})
	require.NoError(t, err)
	for _, id := range taskRuns(h.getSchedule("shown")) {
		h.waitState(id, coordinatorv1.State_STATE_COMPLETE)
	}
	cutoff := time.Now().Add(time.Hour)
	_, err = st.EventPrune(h.ctx, &store.EventPruneParams{Before: cutoff, Limit: 100000})
	require.NoError(t, err)
	res, err := st.TaskPrune(h.ctx, &store.TaskPruneParams{Before: cutoff, Limit: 1000})
	require.NoError(t, err)
	require.Positive(t, res.Deleted)
	pruned := 0
	for _, r := range h.getSchedule("shown").GetRuns() {
		if r.GetTaskId() == "" {
			continue
		}
		_, err := st.TaskGet(h.ctx, r.GetTaskId())
		if errors.Is(err, store.ErrNotFound) {
			pruned++
			require.True(t, r.GetTaskPruned(), "run of %s", r.GetFireTime().AsTime())
			require.Equal(t, coordinatorv1.State_STATE_UNSPECIFIED, r.GetTaskState())
			continue
		}
		require.NoError(t, err)
		require.False(t, r.GetTaskPruned())
		// (A firing under way when the pause landed may have added a
		// task still running.)
		require.NotEqual(t, coordinatorv1.State_STATE_UNSPECIFIED, r.GetTaskState())
	}
	require.Equal(t, res.Deleted, pruned)
}

// holder is a step handler that holds every attempt until released, and
// says when each starts and whether it was cancelled.
type holder struct {
	started   chan string
	release   chan struct{}
	cancelled atomic.Int64
}

func newHolder() *holder {
	return &holder{started: make(chan string, 100), release: make(chan struct{})}
}

func (hd *holder) handle(ctx context.Context, req *executor.Request) (any, error) {
	hd.started <- req.TaskID
	select {
	case <-hd.release:
		return map[string]any{}, nil
	case <-ctx.Done():
		hd.cancelled.Add(1)
		return nil, ctx.Err()
	}
}

func TestScheduleOverlap(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"skip", "cancel_previous", "buffer_one"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			h := serveCoordinator(t, coordinator.Config{Store: openSQLite(t), Registerer: reg}, nil)
			hd := newHolder()
			runExecutor(h, executor.Config{ID: "exec-1", Capacity: 8}, listen(t), map[string]executor.HandlerFunc{"hold": hd.handle})
			h.apply(blockingTemplate)
			h.createSchedule(&coordinatorv1.CreateScheduleRequest{
				Name: "o", Namespace: "test", Template: "blocking", Cron: everySecond, Overlap: policy,
			})
			first := <-hd.started
			switch policy {
			case "skip":
				// Later firings are skipped while the first runs.
				require.Eventually(t, func() bool {
					return metricValue(t, reg, "tasker_schedule_firings_total", "schedule", "o", "outcome", "skipped_overlap") >= 2
				}, 20*time.Second, 10*time.Millisecond)
				resp := h.getSchedule("o")
				require.Len(t, taskRuns(resp), 1)
				for _, r := range resp.GetRuns() {
					if r.GetTaskId() == "" {
						require.Equal(t, "overlap", r.GetSkipped())
					}
				}
				close(hd.release)
				h.waitState(first, coordinatorv1.State_STATE_COMPLETE)
				h.waitRuns("o", 2)
			case "cancel_previous":
				second := <-hd.started
				require.NotEqual(t, first, second)
				task := h.waitState(first, coordinatorv1.State_STATE_CANCELLED)
				require.Contains(t, task.GetTransitions()[len(task.GetTransitions())-1].GetReason(), "cancel_previous")
				close(hd.release)
			case "buffer_one":
				var buffered time.Time
				require.Eventually(t, func() bool {
					resp := h.getSchedule("o")
					buffered = resp.GetSchedule().GetBufferedFireTime().AsTime()
					return resp.GetSchedule().GetBufferedFireTime() != nil &&
						metricValue(t, reg, "tasker_schedule_firings_total", "schedule", "o", "outcome", "skipped_buffer_full") >= 1
				}, 20*time.Second, 10*time.Millisecond)
				require.Len(t, taskRuns(h.getSchedule("o")), 1, "the buffered firing waits")
				hd.release <- struct{}{} // the first finishes; the buffered one starts
				h.waitState(first, coordinatorv1.State_STATE_COMPLETE)
				second := <-hd.started
				// The task starts in its creating commit; its run is
				// recorded by the cursor's write just after.
				require.Eventually(t, func() bool {
					return taskRuns(h.getSchedule("o"))[buffered] == second
				}, 20*time.Second, 10*time.Millisecond, "the buffered fire time's task started")
				require.Nil(t, h.getSchedule("o").GetSchedule().GetBufferedFireTime())
				close(hd.release)
			}
		})
	}
}

// Backfill creates the tasks of exactly the fire times in range that have
// none, before the cursor; a second backfill creates nothing.
func TestScheduleBackfill(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.apply(scheduledTemplate)
	sched := h.createSchedule(&coordinatorv1.CreateScheduleRequest{
		Name: "daily", Namespace: "test", Template: "scheduled", Cron: "0 3 * * *", Timezone: "Europe/Paris",
	})
	cursor := sched.GetNextFireTime().AsTime()
	from, to := cursor.AddDate(0, 0, -10), cursor.Add(-time.Hour) // the ten previous nights
	first, err := h.client.BackfillSchedule(h.ctx, &coordinatorv1.BackfillScheduleRequest{
		Name: "daily", From: timestamppb.New(from.AddDate(0, 0, -0).Add(-time.Minute)), To: timestamppb.New(to),
	})
	require.NoError(t, err)
	require.Len(t, first.GetCreated(), 10)
	require.Zero(t, first.GetExisting())
	spec, err := schedule.Parse("0 3 * * *", "Europe/Paris")
	require.NoError(t, err)
	for _, r := range first.GetCreated() {
		at := r.GetFireTime().AsTime()
		require.Equal(t, 3, at.In(spec.Location()).Hour())
		h.requireTaskOfFireTime(sched, at, r.GetTaskId())
	}
	// A wider second range creates only the ones not there yet.
	second, err := h.client.BackfillSchedule(h.ctx, &coordinatorv1.BackfillScheduleRequest{
		Name: "daily", From: timestamppb.New(from.AddDate(0, 0, -2).Add(-time.Minute)), To: timestamppb.New(cursor.AddDate(0, 0, 5)),
	})
	require.NoError(t, err)
	require.Len(t, second.GetCreated(), 2, "two more nights; none at or after the cursor")
	require.Equal(t, int64(10), second.GetExisting())
	again, err := h.client.BackfillSchedule(h.ctx, &coordinatorv1.BackfillScheduleRequest{
		Name: "daily", From: timestamppb.New(from.AddDate(0, 0, -2).Add(-time.Minute)), To: timestamppb.New(to),
	})
	require.NoError(t, err)
	require.Empty(t, again.GetCreated())
	require.Equal(t, int64(12), again.GetExisting())
	require.Len(t, taskRuns(h.getSchedule("daily")), 12)
}

// flakyAdvance fails a schedule's first cursor advances after the task was
// created, as a coordinator killed between the two would leave it.
type flakyAdvance struct {
	store.Store
	fails atomic.Int64
}

func (f *flakyAdvance) ScheduleAdvance(ctx context.Context, p *store.ScheduleAdvanceParams) (*store.Schedule, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, fmt.Errorf("injected: %w", store.ErrUnavailable)
	}
	return f.Store.ScheduleAdvance(ctx, p)
}

// A firing whose task was created but whose cursor did not move is fired
// again, and its key collapses the second create onto the first task.
func TestScheduleRefireAfterFailedAdvanceCreatesOnce(t *testing.T) {
	t.Parallel()
	st := &flakyAdvance{Store: openSQLite(t)}
	st.fails.Store(3)
	h := serveCoordinator(t, coordinator.Config{Store: st}, nil)
	h.apply(scheduledTemplate)
	sched := h.createSchedule(&coordinatorv1.CreateScheduleRequest{
		Name: "flaky", Namespace: "test", Template: "scheduled", Cron: everySecond, Overlap: "allow",
	})
	resp := h.waitRuns("flaky", 2)
	for at, id := range taskRuns(resp) {
		h.requireTaskOfFireTime(sched, at, id)
	}
	// Every fire time from the first on is there once: a run with a task.
	cursor := resp.GetSchedule().GetNextFireTime().AsTime()
	first := sched.GetNextFireTime().AsTime()
	runs := taskRuns(resp)
	for at := first; at.Before(cursor); at = at.Add(time.Second) {
		require.NotEmpty(t, runs[at], "fire time %s", at)
	}
}

// Several coordinators on one store handle each fire time once.
func TestScheduleSharedByCoordinators(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	var hs []*harness
	regs := make([]*prometheus.Registry, 3)
	for i := range 3 {
		regs[i] = prometheus.NewRegistry()
		hs = append(hs, serveCoordinator(t, coordinator.Config{Store: st, Registerer: regs[i], ScheduleReload: 100 * time.Millisecond}, nil))
	}
	hs[0].apply(scheduledTemplate)
	sched := hs[1].createSchedule(&coordinatorv1.CreateScheduleRequest{
		Name: "shared", Namespace: "test", Template: "scheduled", Cron: everySecond, Overlap: "allow",
	})
	resp := hs[2].waitRuns("shared", 4)
	cursor := resp.GetSchedule().GetNextFireTime().AsTime()
	runs := taskRuns(resp)
	n := 0
	for at := sched.GetNextFireTime().AsTime(); at.Before(cursor); at = at.Add(time.Second) {
		require.NotEmpty(t, runs[at], "fire time %s", at)
		hs[0].requireTaskOfFireTime(sched, at, runs[at])
		n++
	}
	// The counter moved once per fire time, summed over coordinators
	// (read after the cursor, so it may count a few more).
	var total float64
	for _, reg := range regs {
		total += metricValue(t, reg, "tasker_schedule_firings_total", "schedule", "shared", "outcome", "created")
	}
	require.GreaterOrEqual(t, total, float64(n))
}

// After downtime, fire times inside the catch-up window still run; older
// ones are stored as one skipped run that counts them.
func TestScheduleCatchUpAfterDowntime(t *testing.T) {
	t.Parallel()
	h, n := nodeHarness(t, coordinator.Config{}, 0)
	h.apply(scheduledTemplate)
	sched := h.createSchedule(&coordinatorv1.CreateScheduleRequest{
		Name: "catchup", Namespace: "test", Template: "scheduled", Cron: everySecond, Overlap: "allow",
		CatchupWindow: durationpb.New(1500 * time.Millisecond),
	})
	h.waitRuns("catchup", 1)
	n.crash()
	down := time.Now()
	require.Eventually(t, func() bool { return time.Since(down) > 5*time.Second }, 10*time.Second, 10*time.Millisecond)
	n.start()
	var missed *coordinatorv1.ScheduleRun
	require.Eventually(t, func() bool {
		resp, err := h.client.GetSchedule(h.ctx, &coordinatorv1.GetScheduleRequest{Name: "catchup", Runs: 1000})
		if err != nil {
			return false
		}
		for _, r := range resp.GetRuns() {
			if r.GetSkipped() == "catchup_window" {
				missed = r
			}
		}
		return missed != nil && resp.GetSchedule().GetNextFireTime().AsTime().After(time.Now())
	}, 20*time.Second, 20*time.Millisecond)
	require.GreaterOrEqual(t, missed.GetCount(), int64(2), "at least two fire times fell out of the window")
	resp := h.getSchedule("catchup")
	runs := taskRuns(resp)
	// Every fire time up to the cursor is run or inside the skipped range,
	// never both.
	last := missed.GetLastFireTime().AsTime()
	require.Equal(t, int64(last.Sub(missed.GetFireTime().AsTime())/time.Second)+1, missed.GetCount())
	for at := sched.GetNextFireTime().AsTime(); at.Before(resp.GetSchedule().GetNextFireTime().AsTime()); at = at.Add(time.Second) {
		skipped := !at.Before(missed.GetFireTime().AsTime()) && !at.After(last)
		require.NotEqual(t, skipped, runs[at] != "", "fire time %s: skipped=%v task=%q", at, skipped, runs[at])
	}
	// The ones just inside the window ran late, after the restart.
	require.NotEmpty(t, runs[last.Add(time.Second)])
}

// A firing the create path refuses for good (here: a newer template version,
// which a schedule without a version follows, requires a context field the
// schedule does not give) is recorded as skipped, not retried for ever.
func TestScheduleFiringRefusedIsSkipped(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := serveCoordinator(t, coordinator.Config{Store: openSQLite(t), Registerer: reg}, nil)
	h.apply(scheduledTemplate)
	h.createSchedule(&coordinatorv1.CreateScheduleRequest{
		Name: "strict", Namespace: "test", Template: "scheduled", Cron: everySecond, Overlap: "allow",
	})
	h.waitRuns("strict", 1)
	h.apply(strings.Replace(strings.Replace(scheduledTemplate, "version: 1.0.0", "version: 2.0.0", 1),
		"  type: object\n", "  type: object\n  required: [region]\n", 1))
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "tasker_schedule_firings_total", "schedule", "strict", "outcome", "skipped_failed") >= 2
	}, 20*time.Second, 10*time.Millisecond)
	var failed *coordinatorv1.ScheduleRun
	for _, r := range h.getSchedule("strict").GetRuns() {
		if strings.HasPrefix(r.GetSkipped(), "failed: ") {
			failed = r
		}
	}
	require.NotNil(t, failed)
	require.Contains(t, failed.GetSkipped(), "region")
	require.Empty(t, failed.GetTaskId())
}

// Schedules are guarded by their template's namespace: writes need write
// access there, reads read access, and a list shows only granted
// namespaces.
func TestScheduleSecurity(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	all, writerA, readerA, writerB := s.client("all-token-0123456789"), s.client("writer-a-token-0123456789"),
		s.client("reader-a-token-0123456789"), s.client("writer-b-token-0123456789")
	require.NoError(t, s.register(all, "a"))
	require.NoError(t, s.register(all, "b"))
	req := func(name, ns string) *coordinatorv1.CreateScheduleRequest {
		return &coordinatorv1.CreateScheduleRequest{Name: name, Namespace: ns, Template: "flow", Cron: "@daily"}
	}
	_, err := writerA.CreateSchedule(s.ctx, req("in-a", "a"))
	require.NoError(t, err)
	_, err = writerB.CreateSchedule(s.ctx, req("in-b", "b"))
	require.NoError(t, err)
	_, err = readerA.CreateSchedule(s.ctx, req("nope", "a"))
	requireCode(t, err, codes.PermissionDenied, "")
	_, err = writerA.CreateSchedule(s.ctx, req("nope", "b"))
	requireCode(t, err, codes.PermissionDenied, "")

	_, err = readerA.GetSchedule(s.ctx, &coordinatorv1.GetScheduleRequest{Name: "in-a"})
	require.NoError(t, err)
	_, err = readerA.GetSchedule(s.ctx, &coordinatorv1.GetScheduleRequest{Name: "in-b"})
	requireCode(t, err, codes.PermissionDenied, "")
	_, err = writerA.PauseSchedule(s.ctx, &coordinatorv1.PauseScheduleRequest{Name: "in-b"})
	requireCode(t, err, codes.PermissionDenied, "")
	_, err = readerA.PauseSchedule(s.ctx, &coordinatorv1.PauseScheduleRequest{Name: "in-a"})
	requireCode(t, err, codes.PermissionDenied, "")
	_, err = writerB.DeleteSchedule(s.ctx, &coordinatorv1.DeleteScheduleRequest{Name: "in-a"})
	requireCode(t, err, codes.PermissionDenied, "")

	list, err := readerA.ListSchedules(s.ctx, &coordinatorv1.ListSchedulesRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetSchedules(), 1)
	require.Equal(t, "in-a", list.GetSchedules()[0].GetName())
	list, err = all.ListSchedules(s.ctx, &coordinatorv1.ListSchedulesRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetSchedules(), 2)
}
