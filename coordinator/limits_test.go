package coordinator_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

func rateLimit(name string, units int64, period time.Duration, burst int64) *coordinatorv1.RateLimit {
	return &coordinatorv1.RateLimit{Name: name, Units: units, Period: durationpb.New(period), Burst: burst}
}

// chargeTemplate has a step drawing on the named limit, and concurrency
// keys at both levels.
func chargeTemplate(version, limit string, units int) *coordinatorv1.TaskTemplate {
	tpl := &template.Template{
		Namespace: "billing", Name: "charge", Version: version,
		Concurrency: []template.Concurrency{{Key: "context.customer_id", MaxRunning: 1, Strategy: template.StrategyCancelNewest}},
		Steps: []template.Step{{
			Name: "charge", Handler: "noop",
			Concurrency: []template.Concurrency{{Key: "context.account_id", MaxRunning: 2}},
			RateLimits:  []template.RateLimitUse{{Name: limit, Units: units, Key: "context.account_id"}},
		}},
	}
	p, err := templatepb.ToProto(tpl)
	if err != nil {
		panic(err)
	}
	return p
}

func TestRateLimitsCRUD(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	list, err := h.client.ListRateLimits(h.ctx, &coordinatorv1.ListRateLimitsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetRateLimits())

	set, err := h.client.SetRateLimit(h.ctx, &coordinatorv1.SetRateLimitRequest{RateLimit: rateLimit("stripe", 100, time.Second, 20)})
	require.NoError(t, err)
	got := set.GetRateLimit()
	require.Equal(t, "stripe", got.GetName())
	require.Equal(t, int64(100), got.GetUnits())
	require.Equal(t, time.Second, got.GetPeriod().AsDuration())
	require.Equal(t, int64(20), got.GetBurst())
	require.NotNil(t, got.GetCreatedAt())
	require.True(t, proto.Equal(got.GetCreatedAt(), got.GetUpdatedAt()))

	// Replacing keeps created_at.
	set, err = h.client.SetRateLimit(h.ctx, &coordinatorv1.SetRateLimitRequest{RateLimit: rateLimit("stripe", 10, time.Minute, 5)})
	require.NoError(t, err)
	require.Equal(t, int64(10), set.GetRateLimit().GetUnits())
	require.True(t, proto.Equal(got.GetCreatedAt(), set.GetRateLimit().GetCreatedAt()))
	require.False(t, set.GetRateLimit().GetUpdatedAt().AsTime().Before(got.GetUpdatedAt().AsTime()))

	_, err = h.client.SetRateLimit(h.ctx, &coordinatorv1.SetRateLimitRequest{RateLimit: rateLimit("github", 5000, time.Hour, 100)})
	require.NoError(t, err)
	list, err = h.client.ListRateLimits(h.ctx, &coordinatorv1.ListRateLimitsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetRateLimits(), 2)
	require.Equal(t, "github", list.GetRateLimits()[0].GetName())
	require.Equal(t, "stripe", list.GetRateLimits()[1].GetName())

	one, err := h.client.GetRateLimit(h.ctx, &coordinatorv1.GetRateLimitRequest{Name: "stripe"})
	require.NoError(t, err)
	require.True(t, proto.Equal(set.GetRateLimit(), one.GetRateLimit()))

	_, err = h.client.DeleteRateLimit(h.ctx, &coordinatorv1.DeleteRateLimitRequest{Name: "github"})
	require.NoError(t, err)
	_, err = h.client.GetRateLimit(h.ctx, &coordinatorv1.GetRateLimitRequest{Name: "github"})
	requireCode(t, err, codes.NotFound, `no rate limit named "github"`)
	_, err = h.client.DeleteRateLimit(h.ctx, &coordinatorv1.DeleteRateLimitRequest{Name: "github"})
	requireCode(t, err, codes.NotFound, `no rate limit named "github"`)
	_, err = h.client.GetRateLimit(h.ctx, &coordinatorv1.GetRateLimitRequest{})
	requireCode(t, err, codes.InvalidArgument, "name is required")
	_, err = h.client.DeleteRateLimit(h.ctx, &coordinatorv1.DeleteRateLimitRequest{})
	requireCode(t, err, codes.InvalidArgument, "name is required")
}

func TestRateLimitBadInputRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		name string
		rl   *coordinatorv1.RateLimit
		want string
	}{
		{"missing", nil, "rate_limit is required"},
		{"no name", rateLimit("", 1, time.Second, 1), "rate_limit.name: required"},
		{"bad name", rateLimit("stripe api", 1, time.Second, 1), `rate_limit.name: "stripe api" contains ' '`},
		{"zero units", rateLimit("x", 0, time.Second, 1), "rate_limit.units: 0 is out of range (want 1 to 1000000000)"},
		{"negative units", rateLimit("x", -5, time.Second, 1), "rate_limit.units: -5 is out of range"},
		{"too many units", rateLimit("x", 1_000_000_001, time.Second, 1), "rate_limit.units: 1000000001 is out of range"},
		{"no period", &coordinatorv1.RateLimit{Name: "x", Units: 1, Burst: 1}, "rate_limit.period: required"},
		{"zero period", rateLimit("x", 1, 0, 1), "rate_limit.period: 0s must be positive"},
		{"negative period", rateLimit("x", 1, -time.Second, 1), "rate_limit.period: -1s must be positive"},
		{"sub-millisecond period", rateLimit("x", 1, 1500*time.Microsecond, 1), "rate_limit.period: 1.5ms is not a whole number of milliseconds"},
		{"invalid period", &coordinatorv1.RateLimit{Name: "x", Units: 1, Burst: 1, Period: &durationpb.Duration{Seconds: 1, Nanos: -5}}, "rate_limit.period:"},
		{"zero burst", rateLimit("x", 1, time.Second, 0), "rate_limit.burst: 0 is out of range (want 1 to 1000000000)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.client.SetRateLimit(h.ctx, &coordinatorv1.SetRateLimitRequest{RateLimit: tc.rl})
			requireCode(t, err, codes.InvalidArgument, tc.want)
		})
	}
	list, err := h.client.ListRateLimits(h.ctx, &coordinatorv1.ListRateLimitsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetRateLimits(), "nothing stored")
}

func TestTemplatesUsingRateLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	// An unknown limit: refused, naming the step and field, with the fix.
	for _, validateOnly := range []bool{true, false} {
		_, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: chargeTemplate("1.0.0", "stripe", 1), ValidateOnly: validateOnly})
		requireCode(t, err, codes.InvalidArgument,
			`step "charge": rate_limits[0].name: no rate limit named "stripe"; define it with: tasker limit set stripe --rate N/s`)
	}
	_, err := h.client.SetRateLimit(h.ctx, &coordinatorv1.SetRateLimitRequest{RateLimit: rateLimit("stripe", 100, time.Second, 20)})
	require.NoError(t, err)

	// More units than the burst could never be admitted.
	_, err = h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: chargeTemplate("1.0.0", "stripe", 21)})
	requireCode(t, err, codes.InvalidArgument, `step "charge": rate_limits[0].units: 21 is more than rate limit "stripe"'s burst of 20`)
	tpls, err := h.client.ListTemplates(h.ctx, &coordinatorv1.ListTemplatesRequest{})
	require.NoError(t, err)
	require.Empty(t, tpls.GetTemplates(), "refused templates are not stored")

	reg, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: chargeTemplate("1.0.0", "stripe", 20)})
	require.NoError(t, err)
	require.True(t, reg.GetCreated())

	// The template comes back with its flow fields and defaults filled in.
	got, err := h.client.GetTemplate(h.ctx, &coordinatorv1.GetTemplateRequest{Namespace: "billing", Name: "charge"})
	require.NoError(t, err)
	gt := got.GetTemplate()
	require.Equal(t, "cancel_newest", gt.GetConcurrency()[0].GetStrategy())
	require.Equal(t, "queue", gt.GetSteps()[0].GetConcurrency()[0].GetStrategy())
	require.Equal(t, int32(20), gt.GetSteps()[0].GetRateLimits()[0].GetUnits())
	require.Equal(t, "context.account_id", gt.GetSteps()[0].GetRateLimits()[0].GetKey())
	// Registering what GetTemplate returned is the same template.
	again, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: gt})
	require.NoError(t, err)
	require.False(t, again.GetCreated())

	// The limit cannot be deleted, or its burst lowered below the units,
	// while the template uses it; the message names the template.
	_, err = h.client.DeleteRateLimit(h.ctx, &coordinatorv1.DeleteRateLimitRequest{Name: "stripe"})
	requireCode(t, err, codes.FailedPrecondition, `rate limit "stripe" is used by billing/charge@1.0.0 (step charge)`)
	_, err = h.client.SetRateLimit(h.ctx, &coordinatorv1.SetRateLimitRequest{RateLimit: rateLimit("stripe", 100, time.Second, 19)})
	requireCode(t, err, codes.FailedPrecondition, `rate_limit.burst: 19 is less than the units steps take from "stripe" in billing/charge@1.0.0 (step charge)`)
	one, err := h.client.GetRateLimit(h.ctx, &coordinatorv1.GetRateLimitRequest{Name: "stripe"})
	require.NoError(t, err)
	require.Equal(t, int64(20), one.GetRateLimit().GetBurst(), "nothing changed")
	_, err = h.client.SetRateLimit(h.ctx, &coordinatorv1.SetRateLimitRequest{RateLimit: rateLimit("stripe", 50, time.Second, 20)})
	require.NoError(t, err, "other changes are fine")
}

func TestTemplateFlowFieldsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bad := func(edit func(*coordinatorv1.TaskTemplate)) *coordinatorv1.TaskTemplate {
		p := chargeTemplate("1.0.0", "stripe", 1)
		p.GetSteps()[0].RateLimits = nil
		edit(p)
		return p
	}
	cases := []struct {
		name string
		tmpl *coordinatorv1.TaskTemplate
		want string
	}{
		{"key does not compile", bad(func(p *coordinatorv1.TaskTemplate) { p.GetConcurrency()[0].Key = "context." }),
			`concurrency[0].key: "context." does not compile: 1:9: Syntax error`},
		{"unknown strategy", bad(func(p *coordinatorv1.TaskTemplate) { p.GetConcurrency()[0].Strategy = "drop" }),
			`concurrency[0].strategy: unknown strategy "drop"`},
		{"max_running zero", bad(func(p *coordinatorv1.TaskTemplate) { p.GetConcurrency()[0].MaxRunning = 0 }),
			`concurrency[0].max_running: 0 is out of range`},
		{"step-level cancel", bad(func(p *coordinatorv1.TaskTemplate) {
			p.GetSteps()[0].GetConcurrency()[0].Strategy = "cancel_in_progress"
		}),
			`step "charge": concurrency[0].strategy: "cancel_in_progress" is for task-level concurrency`},
		{"zero units", bad(func(p *coordinatorv1.TaskTemplate) {
			p.GetSteps()[0].RateLimits = []*coordinatorv1.RateLimitUse{{Name: "stripe", Units: proto.Int32(0)}}
		}), `step "charge": rate_limits[0].units must be at least 1, got 0`},
		{"bad limit key", bad(func(p *coordinatorv1.TaskTemplate) {
			p.GetSteps()[0].RateLimits = []*coordinatorv1.RateLimitUse{{Name: "stripe", Key: "nope"}}
		}), `step "charge": rate_limits[0].key: "nope" does not compile`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: tc.tmpl})
			requireCode(t, err, codes.InvalidArgument, tc.want)
		})
	}
	tpls, err := h.client.ListTemplates(h.ctx, &coordinatorv1.ListTemplatesRequest{})
	require.NoError(t, err)
	require.Empty(t, tpls.GetTemplates(), "nothing stored")
}

func TestSecurityRateLimits(t *testing.T) {
	t.Parallel()
	s := newSecured(t, securedConfig{})
	all, writerA, readerA, execTok := s.client("all-token-0123456789"), s.client("writer-a-token-0123456789"),
		s.client("reader-a-token-0123456789"), s.client("exec-token-0123456789")
	req := &coordinatorv1.SetRateLimitRequest{RateLimit: rateLimit("stripe", 100, time.Second, 20)}

	_, err := readerA.SetRateLimit(s.ctx, req)
	requireCode(t, err, codes.PermissionDenied, `token "reader-a" has read access; SetRateLimit needs write access`)
	_, err = execTok.SetRateLimit(s.ctx, req)
	requireCode(t, err, codes.PermissionDenied, "SetRateLimit needs write access")
	// Limits are shared by every namespace: a token for some cannot change them.
	_, err = writerA.SetRateLimit(s.ctx, req)
	requireCode(t, err, codes.PermissionDenied, `token "writer-a" may not set rate limits: rate limits are shared by every namespace`)
	_, err = all.SetRateLimit(s.ctx, req)
	require.NoError(t, err)

	// Any reader may look.
	_, err = readerA.GetRateLimit(s.ctx, &coordinatorv1.GetRateLimitRequest{Name: "stripe"})
	require.NoError(t, err)
	list, err := readerA.ListRateLimits(s.ctx, &coordinatorv1.ListRateLimitsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetRateLimits(), 1)
	_, err = s.client("").ListRateLimits(s.ctx, &coordinatorv1.ListRateLimitsRequest{})
	requireCode(t, err, codes.Unauthenticated, "no bearer token")

	_, err = writerA.DeleteRateLimit(s.ctx, &coordinatorv1.DeleteRateLimitRequest{Name: "stripe"})
	requireCode(t, err, codes.PermissionDenied, `token "writer-a" may not delete rate limits`)
	_, err = readerA.DeleteRateLimit(s.ctx, &coordinatorv1.DeleteRateLimitRequest{Name: "stripe"})
	requireCode(t, err, codes.PermissionDenied, "DeleteRateLimit needs write access")
	_, err = all.DeleteRateLimit(s.ctx, &coordinatorv1.DeleteRateLimitRequest{Name: "stripe"})
	require.NoError(t, err)
}
