package template_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

// validTemplate is a small valid template that each case below breaks in one
// way.
func validTemplate() *template.Template {
	return &template.Template{
		Namespace: "demo",
		Name:      "order_fulfillment",
		Version:   "1.0.0",
		Steps: []template.Step{
			{Name: "validate", Handler: "echo"},
			{Name: "charge", Handler: "flaky", DependsOn: []string{"validate"}},
			{Name: "ship", Handler: "noop", DependsOn: []string{"charge"}},
		},
	}
}

func dur(d time.Duration) template.Duration { return template.Duration(d) }

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		edit    func(*template.Template)
		limits  template.Limits
		want    string // exact Error() text
		field   string
		step    string
		wantErr bool
	}{
		{name: "valid", edit: func(*template.Template) {}},
		{name: "valid with every field", edit: func(tp *template.Template) {
			no := false
			tp.Description = "x"
			tp.ContextSchema = json.RawMessage(`{"type":"object"}`)
			tp.Steps[1] = template.Step{
				Name: "charge", Handler: "flaky", DependsOn: []string{"validate"},
				Config: json.RawMessage(`{"a":[1,2]}`), Retryable: &no, RetryLimit: 100,
				Backoff: template.Backoff{Initial: dur(time.Millisecond), Multiplier: 1, Max: dur(time.Millisecond)},
				Timeout: dur(time.Second), Skippable: true,
			}
		}},
		{name: "valid names with dots and dashes", edit: func(tp *template.Template) {
			tp.Namespace, tp.Name = "acme.billing-v2", "Charge_Card-2.0"
		}},
		{name: "valid decision with children", edit: func(tp *template.Template) { tp.Steps[0].Decision = true }},
		{name: "decision without a child", edit: func(tp *template.Template) { tp.Steps[2].Decision = true },
			want: `step "ship": decision: a decision step needs at least one child (a step that depends_on it) to choose from`, field: "decision", step: "ship"},
		{name: "valid prerelease version", edit: func(tp *template.Template) { tp.Version = "2.0.0-rc.1+build.5" }},
		{name: "valid null config and schema", edit: func(tp *template.Template) {
			tp.ContextSchema = json.RawMessage(`null`)
			tp.Steps[0].Config = json.RawMessage(`null`)
		}},

		{name: "namespace missing", edit: func(tp *template.Template) { tp.Namespace = "" },
			want: "namespace: required", field: "namespace"},
		{name: "namespace with slash", edit: func(tp *template.Template) { tp.Namespace = "a/b" },
			want: `namespace: "a/b" contains '/'; use only letters, digits, '_', '.' and '-'`, field: "namespace"},
		{name: "name missing", edit: func(tp *template.Template) { tp.Name = "" },
			want: "name: required", field: "name"},
		{name: "name with at sign", edit: func(tp *template.Template) { tp.Name = "x@1" },
			want: `name: "x@1" contains '@'; use only letters, digits, '_', '.' and '-'`, field: "name"},
		{name: "name with space", edit: func(tp *template.Template) { tp.Name = "order fulfillment" },
			want: `name: "order fulfillment" contains ' '; use only letters, digits, '_', '.' and '-'`, field: "name"},
		{name: "name with non-ASCII letter", edit: func(tp *template.Template) { tp.Name = "café" },
			want: `name: "café" contains 'é'; use only letters, digits, '_', '.' and '-'`, field: "name"},
		{name: "version missing", edit: func(tp *template.Template) { tp.Version = "" },
			want: "version: required (want MAJOR.MINOR.PATCH, e.g. 1.0.0)", field: "version"},
		{name: "version two parts", edit: func(tp *template.Template) { tp.Version = "1.0" },
			want: `version: "1.0" is not a semantic version (want MAJOR.MINOR.PATCH)`, field: "version"},
		{name: "version with v prefix", edit: func(tp *template.Template) { tp.Version = "v1.0.0" },
			want: `version: "v1.0.0" is not a semantic version (want MAJOR.MINOR.PATCH)`, field: "version"},
		{name: "version leading zero", edit: func(tp *template.Template) { tp.Version = "01.0.0" },
			want: `version: "01.0.0" is not a semantic version (want MAJOR.MINOR.PATCH)`, field: "version"},
		{name: "context schema not an object", edit: func(tp *template.Template) { tp.ContextSchema = json.RawMessage(`true`) },
			want: "context_schema: must be a JSON object (a JSON Schema)", field: "context_schema"},
		{name: "context schema not JSON", edit: func(tp *template.Template) { tp.ContextSchema = json.RawMessage(`{`) },
			field: "context_schema", wantErr: true},
		{name: "context schema invalid", edit: func(tp *template.Template) {
			tp.ContextSchema = json.RawMessage(`{"type":"objekt"}`)
		}, field: "context_schema", wantErr: true},
		{name: "valid identity strategies", edit: func(tp *template.Template) { tp.Identity = template.IdentityCallerKey }},
		{name: "valid identity unique", edit: func(tp *template.Template) { tp.Identity = template.IdentityUnique }},
		{name: "valid identity strict", edit: func(tp *template.Template) { tp.Identity = template.IdentityStrict }},
		{name: "unknown identity", edit: func(tp *template.Template) { tp.Identity = "hash" },
			want: `identity: unknown strategy "hash" (want strict, caller_key or unique)`, field: "identity"},
		{name: "valid signal wait", edit: func(tp *template.Template) {
			tp.Steps[1] = template.Step{Name: "charge", DependsOn: []string{"validate"}, WaitFor: &template.WaitFor{Signal: "approved", Timeout: dur(time.Hour)}}
		}},
		{name: "valid sleep", edit: func(tp *template.Template) {
			tp.Steps[1] = template.Step{Name: "charge", DependsOn: []string{"validate"}, Sleep: dur(time.Minute)}
		}},
		{name: "wait with handler", edit: func(tp *template.Template) { tp.Steps[1].WaitFor = &template.WaitFor{Signal: "ok"} },
			want: `step "charge": handler: a wait_for step runs no handler; remove handler "flaky"`, field: "handler", step: "charge"},
		{name: "wait with bad signal name", edit: func(tp *template.Template) {
			tp.Steps[1] = template.Step{Name: "charge", WaitFor: &template.WaitFor{Signal: "a b"}}
		}, field: "wait_for.signal", step: "charge", wantErr: true},
		{name: "wait without signal", edit: func(tp *template.Template) {
			tp.Steps[1] = template.Step{Name: "charge", WaitFor: &template.WaitFor{}}
		}, want: `step "charge": wait_for.signal: required`, field: "wait_for.signal", step: "charge"},
		{name: "wait negative timeout", edit: func(tp *template.Template) {
			tp.Steps[1] = template.Step{Name: "charge", WaitFor: &template.WaitFor{Signal: "ok", Timeout: dur(-time.Second)}}
		}, field: "wait_for.timeout", step: "charge", wantErr: true},
		{name: "wait and sleep", edit: func(tp *template.Template) {
			tp.Steps[1] = template.Step{Name: "charge", WaitFor: &template.WaitFor{Signal: "ok"}, Sleep: dur(time.Second)}
		}, field: "sleep", step: "charge", wantErr: true},
		{name: "sleep with timeout", edit: func(tp *template.Template) {
			tp.Steps[1] = template.Step{Name: "charge", Sleep: dur(time.Second), Timeout: dur(time.Second)}
		}, field: "timeout", step: "charge", wantErr: true},
		{name: "negative sleep", edit: func(tp *template.Template) { tp.Steps[1].Sleep = dur(-time.Second) },
			field: "sleep", step: "charge", wantErr: true},
		{name: "namespace checked before version", edit: func(tp *template.Template) { tp.Namespace, tp.Version = "", "x" },
			want: "namespace: required", field: "namespace"},

		{name: "no steps", edit: func(tp *template.Template) { tp.Steps = nil },
			want: "steps: a template needs at least one step", field: "steps"},
		{name: "too many steps", limits: template.Limits{MaxSteps: 2},
			want: "steps: 3 steps exceed the limit of 2", field: "steps"},
		{name: "default step limit", edit: func(tp *template.Template) {
			tp.Steps = make([]template.Step, template.DefaultMaxSteps+1)
			for i := range tp.Steps {
				tp.Steps[i] = template.Step{Name: fmt.Sprint("s", i), Handler: "h"}
			}
		}, want: "steps: 10001 steps exceed the limit of 10000", field: "steps"},

		{name: "step name missing", edit: func(tp *template.Template) { tp.Steps[1].Name = "" },
			want: "steps[1].name: required", field: "steps[1].name"},
		{name: "step name bad charset", edit: func(tp *template.Template) { tp.Steps[2].Name = "ship/it" },
			want: `steps[2].name: "ship/it" contains '/'; use only letters, digits, '_', '.' and '-'`, field: "steps[2].name"},
		{name: "duplicate step name", edit: func(tp *template.Template) { tp.Steps[2].Name = "validate" },
			want: `step "validate": name: duplicate step name (steps[0] and steps[2])`, field: "name", step: "validate"},
		{name: "handler missing", edit: func(tp *template.Template) { tp.Steps[1].Handler = "" },
			want: `step "charge": handler: required: the name of a handler an executor registers`, field: "handler", step: "charge"},
		{name: "unknown dependency", edit: func(tp *template.Template) { tp.Steps[1].DependsOn = []string{"valdate"} },
			want: `step "charge": depends_on: unknown step "valdate"`, field: "depends_on", step: "charge"},
		{name: "duplicate dependency", edit: func(tp *template.Template) { tp.Steps[2].DependsOn = []string{"charge", "validate", "charge"} },
			want: `step "ship": depends_on: "charge" is listed twice`, field: "depends_on", step: "ship"},
		{name: "self dependency", edit: func(tp *template.Template) { tp.Steps[0].DependsOn = []string{"validate"} },
			want: `step "validate": depends_on: a step cannot depend on itself`, field: "depends_on", step: "validate"},
		{name: "first bad step wins", edit: func(tp *template.Template) {
			tp.Steps[2].Handler = ""
			tp.Steps[1].DependsOn = []string{"nope"}
		}, want: `step "charge": depends_on: unknown step "nope"`, field: "depends_on", step: "charge"},

		{name: "retry limit negative", edit: func(tp *template.Template) { tp.Steps[0].RetryLimit = -1 },
			want: `step "validate": retry_limit: -1 is out of range (want 1 to 100)`, field: "retry_limit", step: "validate"},
		{name: "retry limit too high", edit: func(tp *template.Template) { tp.Steps[0].RetryLimit = 101 },
			want: `step "validate": retry_limit: 101 is out of range (want 1 to 100)`, field: "retry_limit", step: "validate"},
		{name: "backoff initial negative", edit: func(tp *template.Template) { tp.Steps[0].Backoff.Initial = dur(-time.Second) },
			want: `step "validate": backoff.initial: -1s must be positive`, field: "backoff.initial", step: "validate"},
		{name: "backoff multiplier below one", edit: func(tp *template.Template) { tp.Steps[0].Backoff.Multiplier = 0.5 },
			want: `step "validate": backoff.multiplier: 0.5 must be a finite number of at least 1`, field: "backoff.multiplier", step: "validate"},
		{name: "backoff multiplier NaN", edit: func(tp *template.Template) { tp.Steps[0].Backoff.Multiplier = math.NaN() },
			want: `step "validate": backoff.multiplier: NaN must be a finite number of at least 1`, field: "backoff.multiplier", step: "validate"},
		{name: "backoff multiplier infinite", edit: func(tp *template.Template) { tp.Steps[0].Backoff.Multiplier = math.Inf(1) },
			want: `step "validate": backoff.multiplier: +Inf must be a finite number of at least 1`, field: "backoff.multiplier", step: "validate"},
		{name: "backoff max below initial", edit: func(tp *template.Template) {
			tp.Steps[0].Backoff = template.Backoff{Initial: dur(time.Second), Max: dur(10 * time.Millisecond)}
		}, want: `step "validate": backoff.max: 10ms is less than backoff.initial 1s`, field: "backoff.max", step: "validate"},
		{name: "backoff initial above default max is fine", edit: func(tp *template.Template) {
			tp.Steps[0].Backoff = template.Backoff{Initial: dur(time.Minute)}
		}},
		{name: "timeout negative", edit: func(tp *template.Template) { tp.Steps[0].Timeout = dur(-time.Millisecond) },
			want: `step "validate": timeout: -1ms must not be negative`, field: "timeout", step: "validate"},
		{name: "config array", edit: func(tp *template.Template) { tp.Steps[0].Config = json.RawMessage(`[1]`) },
			want: `step "validate": config: must be a JSON object`, field: "config", step: "validate"},
		{name: "config string", edit: func(tp *template.Template) { tp.Steps[0].Config = json.RawMessage(`"x"`) },
			want: `step "validate": config: must be a JSON object`, field: "config", step: "validate"},
		{name: "config broken", edit: func(tp *template.Template) { tp.Steps[0].Config = json.RawMessage(`{"a":`) },
			want: `step "validate": config: must be a JSON object`, field: "config", step: "validate"},

		{name: "two-step cycle", edit: func(tp *template.Template) { tp.Steps[0].DependsOn = []string{"charge"} },
			want: `step "validate": depends_on: cycle: validate -> charge -> validate`, field: "depends_on", step: "validate"},
		{name: "three-step cycle starts at earliest step", edit: func(tp *template.Template) {
			tp.Steps = []template.Step{
				{Name: "root", Handler: "h"},
				{Name: "a", Handler: "h", DependsOn: []string{"root", "c"}},
				{Name: "b", Handler: "h", DependsOn: []string{"a"}},
				{Name: "c", Handler: "h", DependsOn: []string{"b"}},
			}
		}, want: `step "a": depends_on: cycle: a -> c -> b -> a`, field: "depends_on", step: "a"},
		{name: "cycle found after a branch", edit: func(tp *template.Template) {
			tp.Steps = []template.Step{
				{Name: "x", Handler: "h", DependsOn: []string{"y"}},
				{Name: "y", Handler: "h", DependsOn: []string{"z"}},
				{Name: "z", Handler: "h", DependsOn: []string{"w"}},
				{Name: "w", Handler: "h", DependsOn: []string{"z"}},
			}
		}, want: `step "z": depends_on: cycle: z -> w -> z`, field: "depends_on", step: "z"},
		{name: "step problems reported before cycles", edit: func(tp *template.Template) {
			tp.Steps[0].DependsOn = []string{"ship"}
			tp.Steps[2].Handler = ""
		}, want: `step "ship": handler: required: the name of a handler an executor registers`, field: "handler", step: "ship"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl := validTemplate()
			if tc.edit != nil {
				tc.edit(tpl)
			}
			err := template.Validate(tpl, tc.limits)
			if tc.want == "" && !tc.wantErr {
				require.NoError(t, err)
				return
			}
			var ve *template.ValidationError
			require.ErrorAs(t, err, &ve)
			if tc.want != "" {
				require.Equal(t, tc.want, err.Error())
			}
			require.Equal(t, tc.field, ve.Field)
			require.Equal(t, tc.step, ve.Step)
		})
	}
}

func TestValidateContextSchemaMessages(t *testing.T) {
	t.Parallel()
	cases := []struct{ schema, want string }{
		{`{"type":"objekt"}`, "context_schema: not a valid JSON Schema"},
		{`{"type":"object","required":"order_id"}`, "context_schema: not a valid JSON Schema"},
		{`{"$ref":"file:///etc/passwd"}`, "is not allowed; put the definition under $defs"},
		{`{"$ref":"https://example.com/schema.json"}`, "is not allowed"},
		{`{"a":1} {"b":2}`, "context_schema: not valid JSON"},
	}
	for _, tc := range cases {
		tpl := validTemplate()
		tpl.ContextSchema = json.RawMessage(tc.schema)
		err := template.Validate(tpl, template.Limits{})
		require.ErrorContains(t, err, tc.want, "schema %s", tc.schema)
		require.NotContains(t, err.Error(), "\n", "messages must fit on one line")
	}
}

func TestValidateDoesNotModifyInput(t *testing.T) {
	t.Parallel()
	tpl := validTemplate()
	before, err := json.Marshal(tpl)
	require.NoError(t, err)
	require.NoError(t, template.Validate(tpl, template.Limits{}))
	after, err := json.Marshal(tpl)
	require.NoError(t, err)
	require.Equal(t, string(before), string(after))
	require.Nil(t, tpl.Steps[0].Retryable)
}

func TestValidateNormalizedAndRawAgree(t *testing.T) {
	t.Parallel()
	raw := mustParse(t, orderFulfillment)
	norm := mustParse(t, orderFulfillment)
	norm.Normalize()
	require.NoError(t, template.Validate(raw, template.Limits{}))
	require.NoError(t, template.Validate(norm, template.Limits{}))

	raw.Steps[1].RetryLimit = -3
	norm.Steps[1].RetryLimit = -3
	require.Equal(t, template.Validate(raw, template.Limits{}).Error(), template.Validate(norm, template.Limits{}).Error())
}

func TestValidateNil(t *testing.T) {
	t.Parallel()
	var ve *template.ValidationError
	require.True(t, errors.As(template.Validate(nil, template.Limits{}), &ve))
}

func TestValidateYAMLErrors(t *testing.T) {
	t.Parallel()
	// The design's promise: registration names the offending step.
	src := strings.Replace(orderFulfillment, "depends_on: [validate]\n    config: {fail_times: 1}", "depends_on: [valdate]\n    config: {fail_times: 1}", 1)
	err := template.Validate(mustParse(t, src), template.Limits{})
	require.EqualError(t, err, `step "charge": depends_on: unknown step "valdate"`)
}

func TestValidateForEach(t *testing.T) {
	base := func(mod func(*template.Step)) *template.Template {
		tm := &template.Template{Namespace: "ns", Name: "map", Version: "1.0.0", Steps: []template.Step{
			{Name: "split", Handler: "split"},
			{Name: "charge", Handler: "charge", DependsOn: []string{"split"}, ForEach: "results.split.items"},
		}}
		mod(&tm.Steps[1])
		return tm
	}
	require.NoError(t, template.Validate(base(func(*template.Step) {}), template.Limits{}))
	for name, tc := range map[string]struct {
		mod  func(*template.Step)
		want string
	}{
		"not a list":  {func(s *template.Step) { s.ForEach = `"x"` }, "want a list"},
		"syntax":      {func(s *template.Step) { s.ForEach = `results.(` }, "for_each"},
		"with a wait": {func(s *template.Step) { s.Handler = ""; s.Sleep = template.Duration(time.Second) }, "cannot run for each item"},
	} {
		t.Run(name, func(t *testing.T) {
			err := template.Validate(base(tc.mod), template.Limits{})
			var ve *template.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, "charge", ve.Step)
			require.Equal(t, "for_each", ve.Field)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestInstanceName(t *testing.T) {
	require.Equal(t, "charge[12]", template.InstanceName("charge", 12))
	for name, want := range map[string]struct {
		step  string
		index int
		ok    bool
	}{
		"charge[0]":  {"charge", 0, true},
		"charge[12]": {"charge", 12, true},
		"charge":     {},
		"charge[]":   {},
		"charge[01]": {},
		"charge[-1]": {},
		"[3]":        {},
		"charge[3":   {},
	} {
		step, index, ok := template.ParseInstanceName(name)
		require.Equal(t, want.ok, ok, name)
		if ok {
			require.Equal(t, want.step, step, name)
			require.Equal(t, want.index, index, name)
		}
	}
}

func TestValidateUntil(t *testing.T) {
	tmpl := func(s template.Step) *template.Template {
		return &template.Template{Namespace: "ns", Name: "u", Version: "1.0.0", Steps: []template.Step{s}}
	}
	require.NoError(t, template.Validate(tmpl(template.Step{Name: "w", Until: "context.at"}), template.Limits{}))
	for name, tc := range map[string]struct {
		step template.Step
		want string
	}{
		"with sleep":    {template.Step{Name: "w", Until: "context.at", Sleep: template.Duration(time.Second)}, "one of them"},
		"with a signal": {template.Step{Name: "w", Until: "context.at", WaitFor: &template.WaitFor{Signal: "go"}}, "one of them"},
		"syntax":        {template.Step{Name: "w", Until: "context.("}, "1:"},
		"with handler":  {template.Step{Name: "w", Until: "context.at", Handler: "h"}, "until step runs no handler"},
	} {
		t.Run(name, func(t *testing.T) {
			err := template.Validate(tmpl(tc.step), template.Limits{})
			var ve *template.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, "w", ve.Step)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// An expression that reads the results of a step that is not a parent is
// refused at registration, naming the step; it could never read them.
func TestForEachAndUntilReadOnlyParents(t *testing.T) {
	tmpl := func(s template.Step) *template.Template {
		return &template.Template{Namespace: "ns", Name: "r", Version: "1.0.0", Steps: []template.Step{{Name: "split", Handler: "h"}, s}}
	}
	require.NoError(t, template.Validate(tmpl(template.Step{Name: "each", Handler: "h", DependsOn: []string{"split"}, ForEach: "results.split.items"}), template.Limits{}))
	for field, s := range map[string]template.Step{
		"for_each": {Name: "each", Handler: "h", ForEach: "results.split.items"},
		"until":    {Name: "each", Until: `results["split"].at`},
	} {
		err := template.Validate(tmpl(s), template.Limits{})
		var ve *template.ValidationError
		require.ErrorAs(t, err, &ve, field)
		require.Equal(t, field, ve.Field)
		require.ErrorContains(t, err, `reads results.split, but "split" is not a parent of this step`)
	}
}
