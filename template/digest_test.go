package template_test

import (
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestDigestSameContent(t *testing.T) {
	t.Parallel()
	base := template.Digest(mustParse(t, orderFulfillment))
	require.Regexp(t, hexSHA256, base)

	same := map[string]string{
		"reordered keys and flow style": `
steps:
  - handler: echo
    name: validate
  - {name: charge, handler: flaky, depends_on: [validate], config: {"fail_times": 1},
     retry_limit: 3, timeout: 30s, backoff: {max: 1s, multiplier: 2, initial: 10ms}}
  - {name: reserve, handler: sleep, depends_on: [validate], config: {ms: 50}}
  - {name: ship, handler: noop, depends_on: [charge, reserve]}
context_schema:
  properties: {order_id: {type: string}}
  required: [order_id]
  type: object
description: Validate, charge and reserve in parallel, then ship.
version: 1.0.0
name: order_fulfillment
namespace: demo
`,
		"defaults spelt out": strings.Replace(orderFulfillment, "  - name: validate\n    handler: echo\n",
			"  - name: validate\n    handler: echo\n    retryable: true\n    retry_limit: 3\n    backoff: {initial: 2s, multiplier: 2, max: 30s}\n", 1),
		"durations as seconds": strings.Replace(orderFulfillment, "timeout: 30s", "timeout: 30", 1),
	}
	for name, src := range same {
		require.Equal(t, base, template.Digest(mustParse(t, src)), name)
	}

	differ := map[string]string{
		"version":            strings.Replace(orderFulfillment, "version: 1.0.0", "version: 1.0.1", 1),
		"description":        strings.Replace(orderFulfillment, "then ship.", "then ship!", 1),
		"handler":            strings.Replace(orderFulfillment, "handler: noop", "handler: echo", 1),
		"config value":       strings.Replace(orderFulfillment, "{ms: 50}", "{ms: 51}", 1),
		"dependency order":   strings.Replace(orderFulfillment, "[charge, reserve]", "[reserve, charge]", 1),
		"schema":             strings.Replace(orderFulfillment, "{type: string}", "{type: integer}", 1),
		"retryable false":    strings.Replace(orderFulfillment, "handler: echo", "handler: echo\n    retryable: false", 1),
		"skippable":          strings.Replace(orderFulfillment, "handler: echo", "handler: echo\n    skippable: true", 1),
		"timeout":            strings.Replace(orderFulfillment, "timeout: 30s", "timeout: 31s", 1),
		"backoff multiplier": strings.Replace(orderFulfillment, "multiplier: 2,", "multiplier: 3,", 1),
	}
	for name, src := range differ {
		require.NotEqual(t, base, template.Digest(mustParse(t, src)), name)
	}
}

func TestDigestDoesNotModifyInput(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, orderFulfillment)
	before, err := json.Marshal(tpl)
	require.NoError(t, err)
	template.Digest(tpl)
	after, err := json.Marshal(tpl)
	require.NoError(t, err)
	require.Equal(t, string(before), string(after))
}

func TestDigestOfInvalidTemplates(t *testing.T) {
	t.Parallel()
	broken := validTemplate()
	broken.Steps[0].Config = json.RawMessage(`{"a":`)
	d := template.Digest(broken)
	require.Regexp(t, hexSHA256, d, "invalid raw JSON is hashed, not a failure")
	broken.Steps[0].Config = json.RawMessage(`{"a":1`)
	require.NotEqual(t, d, template.Digest(broken))

	nan := validTemplate()
	nan.Steps[0].Backoff.Multiplier = math.NaN()
	require.Empty(t, template.Digest(nan))
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	id := template.Identity("demo", "order_fulfillment", "1.0.0", json.RawMessage(`{"order_id":"A1","items":[{"sku":"x","qty":2}],"note":null}`))
	require.Regexp(t, hexSHA256, id)

	same := []string{
		`{"note":null,"items":[{"qty":2,"sku":"x"}],"order_id":"A1"}`,
		"{\n  \"order_id\" : \"A1\",\n  \"items\": [ {\"sku\":\"x\", \"qty\":2} ],\n  \"note\": null\n}\n",
		`{"order_id":"\u0041\u0031","items":[{"sku":"x","qty":2}],"note":null}`,
	}
	for _, ctx := range same {
		require.Equal(t, id, template.Identity("demo", "order_fulfillment", "1.0.0", json.RawMessage(ctx)), ctx)
	}

	ctx := json.RawMessage(`{"order_id":"A1","items":[{"sku":"x","qty":2}],"note":null}`)
	differ := map[string]string{
		"namespace": template.Identity("demo2", "order_fulfillment", "1.0.0", ctx),
		"name":      template.Identity("demo", "order_fulfillment2", "1.0.0", ctx),
		"version":   template.Identity("demo", "order_fulfillment", "1.0.1", ctx),
		"value":     template.Identity("demo", "order_fulfillment", "1.0.0", json.RawMessage(`{"order_id":"A2","items":[{"sku":"x","qty":2}],"note":null}`)),
		"array order": template.Identity("demo", "order_fulfillment", "1.0.0",
			json.RawMessage(`{"order_id":"A1","items":[{"qty":2,"sku":"x"},{}],"note":null}`)),
		"missing key": template.Identity("demo", "order_fulfillment", "1.0.0", json.RawMessage(`{"order_id":"A1","items":[{"sku":"x","qty":2}]}`)),
	}
	for name, other := range differ {
		require.NotEqual(t, id, other, name)
	}

	// Coordinates are delimited, so shifting text between them changes the
	// identity.
	require.NotEqual(t,
		template.Identity("a.b", "c", "1.0.0", json.RawMessage(`{}`)),
		template.Identity("a", "b.c", "1.0.0", json.RawMessage(`{}`)))
}

func TestIdentityInvalidContextIsHashedAsGiven(t *testing.T) {
	t.Parallel()
	a := template.Identity("n", "t", "1.0.0", json.RawMessage(`{"a":`))
	b := template.Identity("n", "t", "1.0.0", json.RawMessage(`{"a": `))
	require.Regexp(t, hexSHA256, a)
	require.NotEqual(t, a, b)
	require.Equal(t,
		template.Identity("n", "t", "1.0.0", nil),
		template.Identity("n", "t", "1.0.0", json.RawMessage(`null`)))
}
