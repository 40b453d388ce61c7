package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// analyticsFake answers GetAnalytics and records the requests.
type analyticsFake struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	answer func(*coordinatorv1.GetAnalyticsRequest) (*coordinatorv1.GetAnalyticsResponse, error)

	mu   sync.Mutex // guards reqs
	reqs []*coordinatorv1.GetAnalyticsRequest
}

func (f *analyticsFake) GetAnalytics(_ context.Context, r *coordinatorv1.GetAnalyticsRequest) (*coordinatorv1.GetAnalyticsResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, proto.Clone(r).(*coordinatorv1.GetAnalyticsRequest))
	f.mu.Unlock()
	return f.answer(r)
}

func (f *analyticsFake) requests() []*coordinatorv1.GetAnalyticsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*coordinatorv1.GetAnalyticsRequest(nil), f.reqs...)
}

func serveAnalytics(t *testing.T, f *analyticsFake) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, f)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; !errors.Is(err, grpc.ErrServerStopped) {
			require.NoError(t, err)
		}
	})
	return lis.Addr().String()
}

func sampleAnalytics(req *coordinatorv1.GetAnalyticsRequest) *coordinatorv1.TemplateAnalytics {
	pct := func(n int64, p50, p95, p99 time.Duration) *coordinatorv1.Percentiles {
		return &coordinatorv1.Percentiles{Count: n, P50: durationpb.New(p50), P95: durationpb.New(p95), P99: durationpb.New(p99)}
	}
	return &coordinatorv1.TemplateAnalytics{
		Namespace: req.GetNamespace(), Name: req.GetName(), Version: req.GetVersion(),
		Since: req.GetSince(), Until: req.GetUntil(),
		TasksFinished: 4, Completed: 2, Errored: 1, Cancelled: 1,
		ThroughputPerMinute: 0.4, SuccessRate: 0.5, ErrorRate: 0.25, CancelRate: 0.25,
		Duration: pct(4, 5*time.Second, 12*time.Second, 12*time.Second), RetryRate: 0.25,
		Steps: []*coordinatorv1.StepAnalytics{
			{Name: "fetch", Running: pct(4, time.Second, 2*time.Second, 2*time.Second), QueueWait: pct(4, 0, time.Second, time.Second), Attempts: 4, CriticalPathShare: 0.125},
			{Name: "charge", Running: pct(4, 2*time.Second, 2*time.Second, 2*time.Second), QueueWait: pct(4, 0, 1500*time.Millisecond, 1500*time.Millisecond),
				Attempts: 4, Retries: 1, Failures: 2, CriticalPathShare: 0.875},
			{Name: "never", Running: pct(0, 0, 0, 0), QueueWait: pct(0, 0, 0, 0)},
		},
		TopErrors:      []*coordinatorv1.ErrorCount{{StepName: "charge", ErrorClass: "Declined", Message: "card\ndeclined", Count: 2}},
		BottleneckStep: "charge", BottleneckShare: 0.875,
	}
}

func TestAnalyticsCommand(t *testing.T) {
	t.Parallel()
	f := &analyticsFake{answer: func(r *coordinatorv1.GetAnalyticsRequest) (*coordinatorv1.GetAnalyticsResponse, error) {
		return &coordinatorv1.GetAnalyticsResponse{Analytics: sampleAnalytics(r)}, nil
	}}
	addr := serveAnalytics(t, f)

	res := runCLI(t, addr, "analytics", "shop/checkout@1.0.0", "--since", "2h", "--until", "2026-03-01T12:00:00Z", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	until := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	requireProtoEqual(t, &coordinatorv1.GetAnalyticsRequest{Namespace: "shop", Name: "checkout", Version: "1.0.0",
		Since: timestamppb.New(until.Add(-2 * time.Hour)), Until: timestamppb.New(until)}, f.requests()[0])
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &out))
	require.Equal(t, "2026-03-01T10:00:00Z", out["since"])
	require.EqualValues(t, 4, out["tasks_finished"])
	require.Equal(t, "charge", out["bottleneck_step"])
	require.Equal(t, map[string]any{"count": 4.0, "p50_seconds": 5.0, "p95_seconds": 12.0, "p99_seconds": 12.0}, out["duration"])
	steps := out["steps"].([]any)
	require.Len(t, steps, 3)
	charge := steps[1].(map[string]any)
	require.Equal(t, "charge", charge["name"])
	require.Equal(t, 1.5, charge["queue_wait"].(map[string]any)["p95_seconds"])
	require.Equal(t, []any{map[string]any{"step": "charge", "class": "Declined", "message": "card\ndeclined", "count": 2.0}}, out["top_errors"])

	res = runCLI(t, addr, "analytics", "shop/checkout")
	require.Equal(t, 0, res.code, res.stderr)
	last := f.requests()[1]
	require.Nil(t, last.GetSince(), "no --since: the coordinator's default window")
	require.Nil(t, last.GetUntil())
	for _, want := range []string{
		"finished 4: complete 2 (50.0%), error 1 (25.0%), cancelled 1 (25.0%), resolved 0; 0.40/min",
		"duration p50 5s, p95 12s, p99 12s of 4; retry rate 25.0%",
		"bottleneck charge (87.5% of the critical path)",
		"charge  4         1        2         2s/2s/2s             0s/1.5s/1.5s",
		"never   0         0        0         -                    -",
		"2         charge  Declined  card declined",
	} {
		require.Contains(t, res.stdout, want)
	}
}

func TestAnalyticsCommandRefusals(t *testing.T) {
	t.Parallel()
	f := &analyticsFake{answer: func(r *coordinatorv1.GetAnalyticsRequest) (*coordinatorv1.GetAnalyticsResponse, error) {
		return nil, status.Error(codes.NotFound, "template shop/nope is not registered")
	}}
	addr := serveAnalytics(t, f)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"analytics"}, exitUsage, "accepts 1 arg"},
		{[]string{"analytics", "checkout"}, exitUsage, "want NAMESPACE/NAME[@VERSION]"},
		{[]string{"analytics", "shop/checkout", "--since", "yesterday"}, exitUsage, `--since "yesterday": want a duration`},
		{[]string{"analytics", "shop/checkout", "--since", "-1h"}, exitUsage, "must be positive"},
		{[]string{"analytics", "shop/checkout", "--until", "noon"}, exitUsage, `--until "noon"`},
		{[]string{"analytics", "shop/checkout", "-o", "yaml"}, exitFailed, "unknown output format"},
		{[]string{"analytics", "shop/nope"}, exitFailed, "template shop/nope is not registered"},
	} {
		res := runCLI(t, addr, tc.args...)
		require.Equal(t, tc.code, res.code, "%v: %s", tc.args, res.stderr)
		require.Contains(t, res.stderr, tc.msg, tc.args)
	}
	require.Len(t, f.requests(), 1, "only the well-formed command reached the coordinator")
}

func TestAnalyticsWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ts := func(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
	for _, tc := range []struct {
		since, until         string
		wantSince, wantUntil *timestamppb.Timestamp
	}{
		{"", "", nil, nil},
		{"90m", "", ts(now.Add(-90 * time.Minute)), ts(now)},
		{"1h", "2026-02-01T00:00:00Z", ts(time.Date(2026, 1, 31, 23, 0, 0, 0, time.UTC)), ts(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))},
		{"2026-02-01T00:00:00Z", "", ts(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)), nil},
		{"", "2026-02-01T00:00:00.5+01:00", nil, ts(time.Date(2026, 1, 31, 23, 0, 0, 500_000_000, time.UTC))},
	} {
		since, until, err := analyticsWindow(tc.since, tc.until, now)
		require.NoError(t, err)
		requireProtoEqual(t, tc.wantSince, since)
		requireProtoEqual(t, tc.wantUntil, until)
	}
}

// Two tasks in a day printed as 0.00/min, as if none had finished.
func TestPerMinute(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{
		0: "0", 2.0 / 1440: "0.0014", 0.0099: "0.0099", 0.01: "0.01", 0.4: "0.40", 9.996: "10.00", 12.345: "12.3", 1e-7: "1e-07",
	} {
		require.Equal(t, want, perMinute(v), "%v", v)
	}
}
