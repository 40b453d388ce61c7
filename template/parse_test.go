package template_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

// orderFulfillment is the example template from the brief; it must parse and
// validate as written.
const orderFulfillment = `
namespace: demo
name: order_fulfillment
version: 1.0.0
description: Validate, charge and reserve in parallel, then ship.
context_schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  - name: validate
    handler: echo
  - name: charge
    handler: flaky
    depends_on: [validate]
    config: {fail_times: 1}
    retry_limit: 3
    backoff: {initial: 10ms, multiplier: 2, max: 1s}
    timeout: 30s
  - name: reserve
    handler: sleep
    depends_on: [validate]
    config: {ms: 50}
  - name: ship
    handler: noop
    depends_on: [charge, reserve]
`

func mustParse(t testing.TB, src string) *template.Template {
	t.Helper()
	tpl, err := template.Parse([]byte(src))
	require.NoError(t, err)
	return tpl
}

func TestParseExample(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, orderFulfillment)

	require.Equal(t, "demo", tpl.Namespace)
	require.Equal(t, "order_fulfillment", tpl.Name)
	require.Equal(t, "1.0.0", tpl.Version)
	require.Equal(t, "Validate, charge and reserve in parallel, then ship.", tpl.Description)
	require.JSONEq(t, `{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"string"}}}`, string(tpl.ContextSchema))
	require.Len(t, tpl.Steps, 4)

	charge := tpl.Steps[1]
	require.Equal(t, "charge", charge.Name)
	require.Equal(t, "flaky", charge.Handler)
	require.Equal(t, []string{"validate"}, charge.DependsOn)
	require.JSONEq(t, `{"fail_times":1}`, string(charge.Config))
	require.Equal(t, 3, charge.RetryLimit)
	require.Equal(t, 10*time.Millisecond, charge.Backoff.Initial.Std())
	require.Equal(t, 2.0, charge.Backoff.Multiplier)
	require.Equal(t, time.Second, charge.Backoff.Max.Std())
	require.Equal(t, 30*time.Second, charge.Timeout.Std())
	require.Nil(t, charge.Retryable, "Parse must not fill in defaults")

	require.JSONEq(t, `{"ms":50}`, string(tpl.Steps[2].Config))
	require.Equal(t, []string{"charge", "reserve"}, tpl.Steps[3].DependsOn)
	require.Nil(t, tpl.Steps[0].DependsOn)

	require.NoError(t, template.Validate(tpl, template.Limits{}))
}

func TestParseJSONEqualsYAML(t *testing.T) {
	t.Parallel()
	fromYAML := mustParse(t, orderFulfillment)
	asJSON, err := json.Marshal(fromYAML)
	require.NoError(t, err)
	fromJSON := mustParse(t, string(asJSON))
	require.Equal(t, fromYAML, fromJSON)
	require.Equal(t, template.Digest(fromYAML), template.Digest(fromJSON))
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src, wantErr string
	}{
		{"empty", "", "parse template: empty input"},
		{"blank", "  \n\t", "parse template: empty input"},
		{"null document", "null", "parse template: the document is null; want a mapping with namespace, name, version and steps"},
		{"YAML 1.1 boolean as a handler", "namespace: a\nname: b\nversion: 1.0.0\nsteps:\n  - name: s\n    handler: on\n",
			"parse template: line 6: steps[0].handler: got a bool where a string belongs (YAML reads on/off/yes/no/y/n as booleans): quote it"},
		{"YAML 1.1 boolean as a name", "namespace: a\nname: no\n",
			"parse template: line 2: name: got a bool where a string belongs (YAML reads on/off/yes/no/y/n as booleans): quote it"},
		{"number as a dependency", "namespace: a\nname: b\nsteps:\n  - name: s\n    handler: h\n    depends_on: [1]\n",
			"parse template: line 6: steps[0].depends_on[0]: got a number where a string belongs: quote it"},
		{"unknown top-level field", "namespace: a\nnmae: b\n", `parse template: line 2: nmae: unknown field; did you mean "name"?`},
		{"unknown step field", "steps:\n  - name: a\n    dependson: [b]\n", `parse template: line 3: steps[0].dependson: unknown field; did you mean "depends_on"?`},
		{"unknown backoff field", "steps:\n  - name: a\n    backoff: {initial: 1s, factor: 3}\n",
			"parse template: line 3: steps[0].backoff.factor: unknown field; want one of initial, multiplier, max"},
		{"repeated key", "name: a\nname: b\n", `parse template: line 2: key "name" already set in map`},
		{"not a mapping", "- a\n- b\n", "parse template: line 1: the document is a list; want a mapping with namespace, name, version and steps"},
		{"bad duration", "steps:\n  - name: a\n    timeout: soon\n",
			`parse template: line 3: steps[0].timeout: duration "soon": want a Go duration such as "500ms" or "2s": time: invalid duration "soon"`},
		{"negative duration", "steps:\n  - name: a\n    timeout: -5\n", "parse template: line 3: steps[0].timeout: duration -5s: must not be negative"},
		{"steps not a list", "steps: {a: 1}\n", "parse template: line 1: steps: want a list, got a mapping"},
		{"retry_limit not a number", "steps:\n  - name: a\n  - name: b\n    retry_limit: lots\n", "parse template: line 4: steps[1].retry_limit: want a whole number, got a string"},
		{"retry_limit a fraction", "steps:\n  - name: a\n    retry_limit: 2.5\n", "parse template: line 3: steps[0].retry_limit: want a whole number, got 2.5"},
		{"retryable not a bool", "steps:\n  - name: a\n    retryable: sometimes\n", "parse template: line 3: steps[0].retryable: want true or false, got a string"},
		{"multiplier not a number", "steps:\n  - name: a\n    backoff:\n      multiplier: [2]\n", "parse template: line 4: steps[0].backoff.multiplier: want a number, got a list"},
		{"bad YAML", "steps: [\n", "parse template: line 1: did not find expected node content"},
		{"bad JSON", `{"name": "a"`, "parse template: line 1: did not find expected ',' or '}'"},
		{"second document", "namespace: a\nname: b\n---\nnamespace: a\nname: c\n",
			"parse template: line 4: a second YAML document (after ---): Parse reads one template; ParseAll reads each document as one"},
		{"second document after an empty one", "namespace: a\n---\n---\n# c\nname: c\n",
			"parse template: line 5: a second YAML document (after ---): Parse reads one template; ParseAll reads each document as one"},
		{"broken second document", "namespace: a\nname: b\n---\nsteps: [\n", "parse template: line 4: did not find expected node content"},
		{"JSON, wrong type", "{\n  \"namespace\": \"a\",\n  \"steps\": [\n    {\"name\": \"s\", \"retry_limit\": \"3\"}\n  ]\n}\n",
			"parse template: line 4: steps[0].retry_limit: want a whole number, got a string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl, err := template.Parse([]byte(tc.src))
			require.EqualError(t, err, tc.wantErr)
			require.Nil(t, tpl)
			var pe *template.ParseError
			require.ErrorAs(t, err, &pe)
		})
	}
}

// Errors from YAML used to name encoding/json's Go view ("json: cannot
// unmarshal string into Go struct field Step.steps.retry_limit of type
// int") and no line; they name the field as the file writes it, and its
// line, so a CLI can print FILE:LINE: FIELD: MESSAGE.
func TestParseErrorPosition(t *testing.T) {
	t.Parallel()
	const src = `namespace: demo
name: order_fulfillment
version: 1.0.0
steps:
  - name: validate
    handler: echo
  - name: charge
    handler: flaky
    depends_on: [validate]
  - name: reserve
    handler: sleep
    retry_limit: three
`
	_, err := template.Parse([]byte(src))
	var pe *template.ParseError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, &template.ParseError{Line: 12, Field: "steps[2].retry_limit", Message: "want a whole number, got a string"}, pe)
	require.Equal(t, "steps[2].retry_limit: want a whole number, got a string", pe.Detail())

	// The first problem in the document's order is the one reported.
	_, err = template.Parse([]byte("steps:\n  - name: a\n    zzz: 1\n    aaa: 2\n"))
	require.EqualError(t, err, `parse template: line 3: steps[0].zzz: unknown field; want one of name, handler, depends_on, config, retryable, retry_limit, backoff, timeout, skippable, concurrency, rate_limits, wait_for, sleep, until, decision, for_each, task, context`)

	// A value given through an alias is judged, and placed, as written
	// at its anchor.
	_, err = template.Parse([]byte("steps:\n  - name: a\n    backoff: &b {initial: 1s, multiplier: many}\n  - name: b\n    backoff: *b\n"))
	require.EqualError(t, err, `parse template: line 3: steps[0].backoff.multiplier: want a number, got a string`)
}

// Separators that hold no second template are not one: a leading "---",
// a trailing one, a document of comments alone.
func TestParseOneDocument(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"---\nnamespace: a\nname: b\n",
		"namespace: a\nname: b\n---\n",
		"namespace: a\nname: b\n---\n# nothing more\n",
		"namespace: a\nname: b\n...\n",
	} {
		tpl, err := template.Parse([]byte(src))
		require.NoError(t, err, src)
		require.Equal(t, "b", tpl.Name, src)
	}
}

// ParseAll reads a file of several templates as a Kubernetes manifest is
// read: one per document.
func TestParseAll(t *testing.T) {
	t.Parallel()
	names := func(ts []*template.Template) []string {
		var out []string
		for _, tp := range ts {
			out = append(out, tp.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"one", "namespace: a\nname: b\n", []string{"b"}},
		{"two", "namespace: a\nname: b\n---\nnamespace: a\nname: c\n", []string{"b", "c"}},
		{"markers and comments around", "# all of them\n---\nnamespace: a\nname: b\n...\n--- # next\n# nothing here\n---\nnamespace: a\nname: c\n---\n", []string{"b", "c"}},
		{"content on the marker line", "--- {namespace: a, name: b}\n--- {namespace: a, name: c}\n", []string{"b", "c"}},
		{"JSON", `{"namespace": "a", "name": "b"}`, []string{"b"}},
		{"a marker inside a block is no marker", "namespace: a\nname: b\nsteps:\n  - name: s\n    config:\n      text: |\n        ---\n        not a document\n", []string{"b"}},
		{"CRLF", "namespace: a\r\nname: b\r\n---\r\nnamespace: a\r\nname: c\r\n", []string{"b", "c"}},
	} {
		got, err := template.ParseAll([]byte(tc.src))
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, names(got), tc.name)
	}
	got, err := template.ParseAll([]byte("namespace: a\nname: b\nsteps:\n  - name: s\n    config:\n      text: |\n        ---\n        not a document\n"))
	require.NoError(t, err)
	require.JSONEq(t, `{"text": "---\nnot a document\n"}`, string(got[0].Steps[0].Config))

	// An error's line is the file's, not its document's.
	_, err = template.ParseAll([]byte("namespace: a\nname: b\n---\nnamespace: a\nsteps:\n  - name: s\n    retry_limit: lots\n"))
	require.EqualError(t, err, "parse template: line 7: steps[0].retry_limit: want a whole number, got a string")
	for _, src := range []string{"", "---\n", "# only a comment\n---\n# and another\n...\n"} {
		_, err := template.ParseAll([]byte(src))
		require.EqualError(t, err, "parse template: empty input", "%q", src)
	}
}

func TestParseDurationAsSeconds(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, "steps:\n  - name: a\n    timeout: 1.5\n    backoff: {initial: 2, max: 60}\n")
	require.Equal(t, 1500*time.Millisecond, tpl.Steps[0].Timeout.Std())
	require.Equal(t, 2*time.Second, tpl.Steps[0].Backoff.Initial.Std())
	require.Equal(t, time.Minute, tpl.Steps[0].Backoff.Max.Std())
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	no := false
	tpl := &template.Template{
		ContextSchema: json.RawMessage(`null`),
		Steps: []template.Step{
			{Name: "defaults", Config: json.RawMessage(" null ")},
			{
				Name: "explicit", Retryable: &no, RetryLimit: 7,
				Backoff: template.Backoff{Initial: template.Duration(time.Millisecond), Multiplier: 1.5, Max: template.Duration(time.Second)},
				Config:  json.RawMessage(`{"a":1}`),
			},
			{Name: "long initial", Backoff: template.Backoff{Initial: template.Duration(time.Minute)}},
		},
	}
	tpl.Normalize()

	require.Nil(t, tpl.ContextSchema)
	d := tpl.Steps[0]
	require.NotNil(t, d.Retryable)
	require.True(t, *d.Retryable)
	require.Equal(t, template.DefaultRetryLimit, d.RetryLimit)
	require.Equal(t, template.Backoff{
		Initial:    template.Duration(template.DefaultBackoffInitial),
		Multiplier: template.DefaultBackoffMultiplier,
		Max:        template.Duration(template.DefaultBackoffMax),
	}, d.Backoff)
	require.Nil(t, d.Config)
	require.Nil(t, d.DependsOn)
	require.Zero(t, d.Timeout, "no timeout stays no timeout")

	e := tpl.Steps[1]
	require.False(t, *e.Retryable, "an explicit false must survive")
	require.False(t, e.IsRetryable())
	require.Equal(t, 7, e.RetryLimit)
	require.Equal(t, time.Millisecond, e.Backoff.Initial.Std())
	require.Equal(t, 1.5, e.Backoff.Multiplier)
	require.Equal(t, time.Second, e.Backoff.Max.Std())
	require.JSONEq(t, `{"a":1}`, string(e.Config))

	require.Equal(t, time.Minute, tpl.Steps[2].Backoff.Max.Std(), "max defaults to at least initial")

	snapshot, err := json.Marshal(tpl)
	require.NoError(t, err)
	tpl.Normalize()
	again, err := json.Marshal(tpl)
	require.NoError(t, err)
	require.JSONEq(t, string(snapshot), string(again), "Normalize must be idempotent")
}

func TestNormalizeDoesNotShareRetryable(t *testing.T) {
	t.Parallel()
	tpl := &template.Template{Steps: []template.Step{{Name: "a"}, {Name: "b"}}}
	tpl.Normalize()
	*tpl.Steps[0].Retryable = false
	require.True(t, *tpl.Steps[1].Retryable)
}
