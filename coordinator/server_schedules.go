package coordinator

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/schedule"
	"github.com/tasker-go/tasker/store"
)

// The schedule RPCs: each authorizes against the schedule's template
// namespace, validates, and leaves the work to the scheduler. Schedules
// live in the store, not with an owner, so every coordinator answers for
// every schedule.

// Bounds of GetSchedule's lists.
const (
	defaultNextFireTimes = 5
	maxNextFireTimes     = 100
	defaultScheduleRuns  = 10
	maxScheduleRuns      = 1000
)

func fieldStatus(err error) error {
	var fe *schedule.FieldError
	if errors.As(err, &fe) {
		return status.Error(codes.InvalidArgument, fe.Error())
	}
	return toStatus(err)
}

func (s *server) CreateSchedule(ctx context.Context, req *coordinatorv1.CreateScheduleRequest) (*coordinatorv1.CreateScheduleResponse, error) {
	if err := s.authorize(ctx, req.GetNamespace()); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(req.GetName())
	switch {
	case name == "":
		return nil, status.Error(codes.InvalidArgument, "name: is required")
	case len(name) > 200 || strings.ContainsAny(name, "/:\n\t "):
		return nil, status.Errorf(codes.InvalidArgument, "name: %q must be at most 200 characters without spaces, '/' or ':'", name)
	case req.GetNamespace() == "" || req.GetTemplate() == "":
		return nil, status.Error(codes.InvalidArgument, "template: namespace and template name are required")
	}
	spec, err := schedule.ParseNew(req.GetCron(), req.GetTimezone())
	if err != nil {
		return nil, fieldStatus(err)
	}
	overlap, err := schedule.ParseOverlap(req.GetOverlap())
	if err != nil {
		return nil, fieldStatus(err)
	}
	window := defaultCatchupWindow
	if d := req.GetCatchupWindow(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "catchup_window: %v", err)
		}
		if window = d.AsDuration(); window < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "catchup_window: %s is negative", window)
		}
	}
	raw, err := contextJSON(req.GetContext())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if len(raw) > s.c.cfg.Limits.MaxContextBytes {
		return nil, status.Errorf(codes.ResourceExhausted, "context: %d bytes, over the limit of %d bytes (max_context_bytes)", len(raw), s.c.cfg.Limits.MaxContextBytes)
	}
	ct, err := s.c.engine.templates.get(ctx, req.GetNamespace(), req.GetTemplate(), req.GetVersion())
	if status.Code(toStatus(err)) == codes.NotFound {
		return nil, status.Errorf(codes.InvalidArgument, "template: %s/%s@%s is not registered", req.GetNamespace(), req.GetTemplate(), cmpVersion(req.GetVersion()))
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if err := ct.schema.Validate(raw); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "context: %v", err)
	}
	sc, err := s.c.sched.createSchedule(ctx, &scheduleParams{spec: spec, sched: &store.Schedule{
		Name: name, Namespace: req.GetNamespace(), TemplateName: req.GetTemplate(), TemplateVersion: req.GetVersion(),
		Cron: spec.Expr(), Timezone: req.GetTimezone(), Context: raw, Overlap: string(overlap), CatchupWindow: window,
	}})
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.CreateScheduleResponse{Schedule: scheduleToProto(sc)}, nil
}

func cmpVersion(v string) string {
	if v == "" {
		return "latest"
	}
	return v
}

// loadSchedule reads a schedule by name and checks the caller may see its
// namespace.
func (s *server) loadSchedule(ctx context.Context, name string) (*store.Schedule, error) {
	if err := s.authorize(ctx, ""); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "name: is required")
	}
	sc, err := s.c.engine.store.ScheduleGet(ctx, name)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.authorize(ctx, sc.Namespace); err != nil {
		return nil, err
	}
	return sc, nil
}

func (s *server) GetSchedule(ctx context.Context, req *coordinatorv1.GetScheduleRequest) (*coordinatorv1.GetScheduleResponse, error) {
	next, runs := int(req.GetNext()), int(req.GetRuns())
	switch {
	case next < 0:
		return nil, status.Error(codes.InvalidArgument, "next: must not be negative")
	case runs < 0:
		return nil, status.Error(codes.InvalidArgument, "runs: must not be negative")
	}
	if next == 0 {
		next = defaultNextFireTimes
	}
	if runs == 0 {
		runs = defaultScheduleRuns
	}
	next, runs = min(next, maxNextFireTimes), min(runs, maxScheduleRuns)
	sc, err := s.loadSchedule(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	resp := &coordinatorv1.GetScheduleResponse{Schedule: scheduleToProto(sc)}
	if spec, err := schedule.Parse(sc.Cron, sc.Timezone); err == nil {
		from := sc.NextFireAt
		if now := s.c.engine.now(); sc.Paused && from.Before(now) {
			from = now
		}
		for _, at := range spec.NextN(from, next) {
			resp.NextFireTimes = append(resp.NextFireTimes, timestamppb.New(at))
		}
	}
	list, err := s.c.engine.store.ScheduleRunList(ctx, &store.ScheduleRunListParams{ScheduleID: sc.ID, Limit: runs})
	if err != nil {
		return nil, toStatus(err)
	}
	// The runs' tasks in one read of the store (not memory: the store is
	// where a task retention deleted is missing from).
	ids := []string{}
	for _, r := range list {
		if r.TaskID != "" {
			ids = append(ids, r.TaskID)
		}
	}
	states := make(map[string]coordinatorv1.State, len(ids))
	if len(ids) > 0 {
		tasks, err := s.c.engine.store.TaskList(ctx, &store.TaskListParams{IDs: ids, Limit: len(ids)})
		if err != nil {
			return nil, toStatus(err)
		}
		for _, t := range tasks {
			states[t.ID] = protoState(t.State)
		}
	}
	for _, r := range list {
		p := scheduleRunToProto(r)
		if r.TaskID != "" {
			st, ok := states[r.TaskID]
			p.TaskState, p.TaskPruned = st, !ok
		}
		resp.Runs = append(resp.Runs, p)
	}
	return resp, nil
}

func (s *server) ListSchedules(ctx context.Context, req *coordinatorv1.ListSchedulesRequest) (*coordinatorv1.ListSchedulesResponse, error) {
	allowed, err := s.listFilter(ctx, req.GetNamespace())
	if err != nil {
		return nil, err
	}
	list, err := s.c.engine.store.ScheduleList(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &coordinatorv1.ListSchedulesResponse{}
	for _, sc := range list {
		if (req.GetNamespace() != "" && sc.Namespace != req.GetNamespace()) || !allowed(sc.Namespace) {
			continue
		}
		resp.Schedules = append(resp.Schedules, scheduleToProto(sc))
	}
	return resp, nil
}

func (s *server) PauseSchedule(ctx context.Context, req *coordinatorv1.PauseScheduleRequest) (*coordinatorv1.PauseScheduleResponse, error) {
	if _, err := s.loadSchedule(ctx, req.GetName()); err != nil {
		return nil, err
	}
	sc, _, err := s.c.sched.setPaused(ctx, req.GetName(), true)
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.PauseScheduleResponse{Schedule: scheduleToProto(sc)}, nil
}

func (s *server) ResumeSchedule(ctx context.Context, req *coordinatorv1.ResumeScheduleRequest) (*coordinatorv1.ResumeScheduleResponse, error) {
	if _, err := s.loadSchedule(ctx, req.GetName()); err != nil {
		return nil, err
	}
	sc, skipped, err := s.c.sched.setPaused(ctx, req.GetName(), false)
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.ResumeScheduleResponse{Schedule: scheduleToProto(sc), Skipped: int64(skipped)}, nil
}

func (s *server) DeleteSchedule(ctx context.Context, req *coordinatorv1.DeleteScheduleRequest) (*coordinatorv1.DeleteScheduleResponse, error) {
	if _, err := s.loadSchedule(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if err := s.c.engine.store.ScheduleDelete(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	s.c.sched.wake()
	return &coordinatorv1.DeleteScheduleResponse{}, nil
}

func (s *server) BackfillSchedule(ctx context.Context, req *coordinatorv1.BackfillScheduleRequest) (*coordinatorv1.BackfillScheduleResponse, error) {
	var from, to time.Time
	for _, b := range []struct {
		name string
		ts   *timestamppb.Timestamp
		dst  *time.Time
	}{{"from", req.GetFrom(), &from}, {"to", req.GetTo(), &to}} {
		if b.ts == nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s: is required", b.name)
		}
		if err := b.ts.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s: %v", b.name, err)
		}
		*b.dst = b.ts.AsTime()
	}
	if err := schedule.CheckRange(from, to); err != nil {
		return nil, fieldStatus(err)
	}
	sc, err := s.loadSchedule(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	runs, existing, err := s.c.sched.backfill(ctx, sc, from, to)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &coordinatorv1.BackfillScheduleResponse{Existing: int64(existing)}
	for _, r := range runs {
		resp.Created = append(resp.Created, scheduleRunToProto(r))
	}
	return resp, nil
}

func scheduleToProto(sc *store.Schedule) *coordinatorv1.Schedule {
	p := &coordinatorv1.Schedule{
		Id: sc.ID, Name: sc.Name, Namespace: sc.Namespace, Template: sc.TemplateName, Version: sc.TemplateVersion,
		Cron: sc.Cron, Timezone: sc.Timezone, Context: jsonStruct(sc.Context), Overlap: sc.Overlap,
		CatchupWindow: durationpb.New(sc.CatchupWindow), Paused: sc.Paused,
		NextFireTime: timestamp(sc.NextFireAt), CreateTime: timestamp(sc.CreatedAt), UpdateTime: timestamp(sc.UpdatedAt),
	}
	if !sc.Buffered.IsZero() {
		p.BufferedFireTime = timestamp(sc.Buffered)
	}
	return p
}

func scheduleRunToProto(r *store.ScheduleRun) *coordinatorv1.ScheduleRun {
	p := &coordinatorv1.ScheduleRun{FireTime: timestamp(r.FireAt), TaskId: r.TaskID, Skipped: r.Skipped, Count: int64(r.Count)}
	if r.TaskID != "" {
		p.Count = 1
	}
	if !r.LastFireAt.IsZero() {
		p.LastFireTime = timestamp(r.LastFireAt)
	}
	return p
}
