package coordinator

import (
	"context"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tasker-go/tasker/analytics"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// defaultAnalyticsWindow is the window GetAnalytics measures when the
// request gives no since.
const defaultAnalyticsWindow = 24 * time.Hour

// storeTimes are the first and last instants the stores can hold: they
// keep times as int64 unix nanoseconds (1677 to 2262), and a window
// reaching past them could not be compared with what is stored.
func storeTimes() (first, last time.Time) {
	return time.Unix(0, math.MinInt64).UTC(), time.Unix(0, math.MaxInt64).UTC()
}

// GetAnalytics measures a template's tasks that finished in a window. The
// window defaults to the 24 hours before now; when it holds more finished
// tasks than one call measures, the answer's since is moved forward to
// cover only the latest of them (see analyticsMaxTasks).
func (s *server) GetAnalytics(ctx context.Context, req *coordinatorv1.GetAnalyticsRequest) (*coordinatorv1.GetAnalyticsResponse, error) {
	switch {
	case req.GetNamespace() == "":
		return nil, status.Error(codes.InvalidArgument, "namespace is required")
	case req.GetName() == "":
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := s.authorize(ctx, req.GetNamespace()); err != nil {
		return nil, err
	}
	until := s.c.engine.now()
	if ts := req.GetUntil(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "until: %v", err)
		}
		until = ts.AsTime()
	}
	since := until.Add(-defaultAnalyticsWindow)
	if ts := req.GetSince(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "since: %v", err)
		}
		since = ts.AsTime()
	}
	first, last := storeTimes()
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"since", since}, {"until", until}} {
		if f.t.Before(first) || f.t.After(last) {
			return nil, status.Errorf(codes.InvalidArgument, "%s: %s is outside the times the store holds (%s to %s)",
				f.name, f.t.UTC().Format(time.RFC3339Nano), first.Format(time.RFC3339), last.Format(time.RFC3339))
		}
	}
	if !since.Before(until) {
		return nil, status.Errorf(codes.InvalidArgument, "since (%s) must be before until (%s)",
			since.UTC().Format(time.RFC3339Nano), until.UTC().Format(time.RFC3339Nano))
	}
	r, err := s.c.engine.analytics(ctx, &analyticsParams{
		namespace: req.GetNamespace(), name: req.GetName(), version: req.GetVersion(),
		since: since, until: until, maxTasks: analyticsMaxTasks, maxSteps: analyticsMaxSteps,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.GetAnalyticsResponse{Analytics: analyticsToProto(req, r)}, nil
}

func analyticsToProto(req *coordinatorv1.GetAnalyticsRequest, r *analytics.Report) *coordinatorv1.TemplateAnalytics {
	p := &coordinatorv1.TemplateAnalytics{
		Namespace: req.GetNamespace(), Name: req.GetName(), Version: req.GetVersion(),
		Since: timestamppb.New(r.Since), Until: timestamppb.New(r.Until),
		TasksFinished: int64(r.Finished), Completed: int64(r.Completed), Errored: int64(r.Errored),
		Cancelled: int64(r.Cancelled), Resolved: int64(r.Resolved),
		ThroughputPerMinute: r.ThroughputPerMinute,
		SuccessRate:         r.SuccessRate, ErrorRate: r.ErrorRate, CancelRate: r.CancelRate,
		Duration:       percentilesToProto(r.Duration),
		RetryRate:      r.RetryRate,
		BottleneckStep: r.Bottleneck, BottleneckShare: r.BottleneckShare,
	}
	for _, st := range r.Steps {
		p.Steps = append(p.Steps, &coordinatorv1.StepAnalytics{
			Name: st.Name, Running: percentilesToProto(st.Running), QueueWait: percentilesToProto(st.QueueWait),
			Attempts: int64(st.Attempts), Retries: int64(st.Retries), Failures: int64(st.Failures),
			CriticalPathShare: st.CriticalPathShare,
		})
	}
	for _, e := range r.TopErrors {
		p.TopErrors = append(p.TopErrors, &coordinatorv1.ErrorCount{
			StepName: e.Step, ErrorClass: e.Class, Message: e.Message, Count: int64(e.Count),
		})
	}
	return p
}

func percentilesToProto(p analytics.Percentiles) *coordinatorv1.Percentiles {
	return &coordinatorv1.Percentiles{
		Count: int64(p.Count), P50: durationpb.New(p.P50), P95: durationpb.New(p.P95), P99: durationpb.New(p.P99),
	}
}
