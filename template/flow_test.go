package template_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// flowTemplate uses every flow-control field once.
const flowTemplate = `
namespace: billing
name: charge_customer
version: 1.0.0
concurrency:
  - key: context.customer_id
    max_running: 1
    strategy: cancel_in_progress
  - key: context.region
    max_running: 10
steps:
  - name: charge
    handler: stripe.charge
    concurrency:
      - key: context.account_id
        max_running: 2
    rate_limits:
      - name: stripe
      - name: stripe-per-account
        units: 3
        key: context.account_id
  - name: notify
    handler: email
    depends_on: [charge]
`

func TestFlowFieldsParseAndNormalize(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, flowTemplate)
	require.Equal(t, []template.Concurrency{
		{Key: "context.customer_id", MaxRunning: 1, Strategy: template.StrategyCancelInProgress},
		{Key: "context.region", MaxRunning: 10},
	}, tpl.Concurrency)
	require.Equal(t, []template.RateLimitUse{{Name: "stripe"}, {Name: "stripe-per-account", Units: 3, Key: "context.account_id"}}, tpl.Steps[0].RateLimits)
	require.NoError(t, template.Validate(tpl, template.Limits{}))

	tpl.Normalize()
	require.Equal(t, template.StrategyQueue, tpl.Concurrency[1].Strategy)
	require.Equal(t, template.StrategyQueue, tpl.Steps[0].Concurrency[0].Strategy)
	require.Equal(t, 1, tpl.Steps[0].RateLimits[0].Units)
	require.Equal(t, 3, tpl.Steps[0].RateLimits[1].Units)
	require.Nil(t, tpl.Steps[1].Concurrency)
	require.Nil(t, tpl.Steps[1].RateLimits)
}

func TestFlowFieldsDigest(t *testing.T) {
	t.Parallel()
	// Defaults spelt out or not: the same template.
	spelt := mustParse(t, flowTemplate)
	spelt.Concurrency[1].Strategy = "queue"
	spelt.Steps[0].RateLimits[0].Units = 1
	require.Equal(t, template.Digest(mustParse(t, flowTemplate)), template.Digest(spelt))

	// A different key or bound is different content.
	other := mustParse(t, flowTemplate)
	other.Steps[0].Concurrency[0].MaxRunning = 3
	require.NotEqual(t, template.Digest(spelt), template.Digest(other))

	// Templates without the fields encode as before (no empty keys), so
	// their digests are unchanged by this feature.
	plain := validTemplate()
	plain.Concurrency = []template.Concurrency{}
	plain.Steps[0].RateLimits = []template.RateLimitUse{}
	raw, err := json.Marshal(plain)
	require.NoError(t, err)
	require.NotContains(t, string(raw), "concurrency")
	require.NotContains(t, string(raw), "rate_limits")
	require.Equal(t, template.Digest(validTemplate()), template.Digest(plain))
}

func TestFlowFieldsJSONRoundTrip(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, flowTemplate)
	raw, err := json.Marshal(tpl)
	require.NoError(t, err)
	back, err := template.Parse(raw)
	require.NoError(t, err)
	require.Equal(t, tpl, back)
}

func TestFlowFieldsUnknownFieldRefused(t *testing.T) {
	t.Parallel()
	_, err := template.Parse([]byte(`
namespace: a
name: b
version: 1.0.0
concurrency: [{key: context.x, max_runing: 1}]
steps: [{name: s, handler: h}]
`))
	require.ErrorContains(t, err, "max_runing")
}

func TestValidateFlowFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		edit  func(*template.Template)
		want  string // exact Error() text; empty means valid
		field string
		step  string
	}{
		{name: "valid task and step level", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "context.customer_id", MaxRunning: 1, Strategy: "cancel_newest"}}
			tp.Steps[1].Concurrency = []template.Concurrency{{Key: "context.account_id", MaxRunning: 2, Strategy: "queue"}}
			tp.Steps[1].RateLimits = []template.RateLimitUse{{Name: "stripe"}, {Name: "stripe", Key: "context.account_id", Units: 2}}
		}},
		{name: "task key empty", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{MaxRunning: 1}}
		}, want: "concurrency[0].key: required: a CEL expression over the task context, e.g. context.customer_id", field: "concurrency[0].key"},
		{name: "task key does not compile", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "context.a", MaxRunning: 1}, {Key: "context.", MaxRunning: 1}}
		}, field: "concurrency[1].key"},
		{name: "task key unknown variable", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "customer_id", MaxRunning: 1}}
		}, want: `concurrency[0].key: "customer_id" does not compile: 1:1: undeclared reference to 'customer_id' (in container '')`, field: "concurrency[0].key"},
		{name: "task key is a list", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "[context.a]", MaxRunning: 1}}
		}, want: `concurrency[0].key: "[context.a]" does not compile: evaluates to list(dyn); want a string, number or bool`, field: "concurrency[0].key"},
		{name: "task max_running zero", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "context.a"}}
		}, want: "concurrency[0].max_running: 0 is out of range (want 1 to 1000000000)", field: "concurrency[0].max_running"},
		{name: "task max_running too high", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "context.a", MaxRunning: template.MaxCount + 1}}
		}, field: "concurrency[0].max_running"},
		{name: "task unknown strategy", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "context.a", MaxRunning: 1, Strategy: "drop"}}
		}, want: `concurrency[0].strategy: unknown strategy "drop" (want queue, cancel_in_progress or cancel_newest)`, field: "concurrency[0].strategy"},
		{name: "task duplicate key", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "context.a", MaxRunning: 1}, {Key: "context.a", MaxRunning: 2}}
		}, want: `concurrency[1].key: "context.a" is listed twice (concurrency[0] and concurrency[1]); merge them`, field: "concurrency[1].key"},
		{name: "task concurrency checked before steps", edit: func(tp *template.Template) {
			tp.Concurrency = []template.Concurrency{{Key: "context.a"}}
			tp.Steps[0].Handler = ""
		}, field: "concurrency[0].max_running"},
		{name: "step key does not compile", edit: func(tp *template.Template) {
			tp.Steps[1].Concurrency = []template.Concurrency{{Key: "context.a +", MaxRunning: 1}}
		}, field: "concurrency[0].key", step: "charge"},
		{name: "step cancel strategy", edit: func(tp *template.Template) {
			tp.Steps[1].Concurrency = []template.Concurrency{{Key: "context.a", MaxRunning: 1, Strategy: "cancel_in_progress"}}
		}, want: `step "charge": concurrency[0].strategy: "cancel_in_progress" is for task-level concurrency; a step's concurrency can only queue`, field: "concurrency[0].strategy", step: "charge"},
		{name: "step duplicate key", edit: func(tp *template.Template) {
			tp.Steps[1].Concurrency = []template.Concurrency{{Key: "context.a", MaxRunning: 1}, {Key: "context.a", MaxRunning: 1}}
		}, field: "concurrency[1].key", step: "charge"},
		{name: "step max_running negative", edit: func(tp *template.Template) {
			tp.Steps[1].Concurrency = []template.Concurrency{{Key: "context.a", MaxRunning: -1}}
		}, want: `step "charge": concurrency[0].max_running: -1 is out of range (want 1 to 1000000000)`, field: "concurrency[0].max_running", step: "charge"},
		{name: "rate limit name empty", edit: func(tp *template.Template) {
			tp.Steps[1].RateLimits = []template.RateLimitUse{{Units: 1}}
		}, want: `step "charge": rate_limits[0].name: required`, field: "rate_limits[0].name", step: "charge"},
		{name: "rate limit name invalid", edit: func(tp *template.Template) {
			tp.Steps[1].RateLimits = []template.RateLimitUse{{Name: "stripe api"}}
		}, want: `step "charge": rate_limits[0].name: "stripe api" contains ' '; use only letters, digits, '_', '.' and '-'`, field: "rate_limits[0].name", step: "charge"},
		{name: "rate limit units negative", edit: func(tp *template.Template) {
			tp.Steps[1].RateLimits = []template.RateLimitUse{{Name: "stripe", Units: -2}}
		}, want: `step "charge": rate_limits[0].units: -2 is out of range (want 1 to 1000000000)`, field: "rate_limits[0].units", step: "charge"},
		{name: "rate limit key does not compile", edit: func(tp *template.Template) {
			tp.Steps[1].RateLimits = []template.RateLimitUse{{Name: "stripe", Key: "context.a)"}}
		}, field: "rate_limits[0].key", step: "charge"},
		{name: "rate limit listed twice", edit: func(tp *template.Template) {
			tp.Steps[1].RateLimits = []template.RateLimitUse{{Name: "stripe"}, {Name: "stripe", Units: 2}}
		}, want: `step "charge": rate_limits[1].name: rate limit "stripe" with this key is listed twice (rate_limits[0] and rate_limits[1]); add up the units instead`, field: "rate_limits[1].name", step: "charge"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl := validTemplate()
			tc.edit(tpl)
			err := template.Validate(tpl, template.Limits{})
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var ve *template.ValidationError
			require.ErrorAs(t, err, &ve)
			if tc.want != "" {
				require.Equal(t, tc.want, err.Error())
			}
			require.NotContains(t, err.Error(), "\n")
			require.Equal(t, tc.field, ve.Field)
			require.Equal(t, tc.step, ve.Step)
		})
	}
}

func TestFlowFieldsProtoRoundTrip(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, flowTemplate)
	pb, err := templatepb.ToProto(tpl)
	require.NoError(t, err)
	require.Len(t, pb.GetConcurrency(), 2)
	require.Equal(t, "cancel_in_progress", pb.GetConcurrency()[0].GetStrategy())
	require.Nil(t, pb.GetSteps()[0].GetRateLimits()[0].Units, "an unset units stays unset, so the coordinator applies the default")
	back, err := templatepb.FromProto(pb)
	require.NoError(t, err)
	require.Equal(t, tpl, back, "as written, without defaults filled in")

	tpl.Normalize()
	pb, err = templatepb.ToProto(tpl)
	require.NoError(t, err)
	back, err = templatepb.FromProto(pb)
	require.NoError(t, err)
	require.Equal(t, tpl, back, "normalized")
	requireAPIRoundTrip(t, tpl)

	// A template without the fields has none in its message either.
	pb, err = templatepb.ToProto(validTemplate())
	require.NoError(t, err)
	require.Nil(t, pb.GetConcurrency())
	require.Nil(t, pb.GetSteps()[0].GetConcurrency())
	require.Nil(t, pb.GetSteps()[0].GetRateLimits())
}

func TestFlowFieldsFromProtoRefusesZeroUnits(t *testing.T) {
	t.Parallel()
	pb, err := templatepb.ToProto(mustParse(t, flowTemplate))
	require.NoError(t, err)
	pb.GetSteps()[0].GetRateLimits()[0].Units = new(int32(0))
	_, err = templatepb.FromProto(pb)
	require.ErrorContains(t, err, `step "charge": rate_limits[0].units must be at least 1, got 0`)
}
