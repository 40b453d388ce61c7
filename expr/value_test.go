package expr_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/expr"
)

func TestValue(t *testing.T) {
	t.Parallel()
	ctx := json.RawMessage(`{"customer": {"id": "c-1", "tier": 2}, "big": 9007199254740993, "tags": ["a", "b"]}`)
	results := map[string]json.RawMessage{
		"quote": json.RawMessage(`{"total": 12.5, "lines": [{"sku": "x", "qty": 3}]}`),
		"empty": nil,
	}
	in, err := expr.ParseInputs(ctx, results)
	require.NoError(t, err)
	cases := []struct {
		src, want string
	}{
		{"context.customer", `{"id":"c-1","tier":2}`},
		{"context.customer.id", `"c-1"`},
		{"context.big", `9007199254740993`}, // every digit, not through a double
		{"context.tags", `["a","b"]`},
		{"results.quote.total", `12.5`},
		{"results.quote.lines[0]", `{"qty":3,"sku":"x"}`},
		{"results.empty", `null`},
		{`{"id": context.customer.id, "n": 1 + 2}`, `{"id":"c-1","n":3}`},
		{`[context.customer.tier, true, null]`, `[2,true,null]`},
		{`has(results.quote.discount) ? results.quote.discount : 0`, `0`},
		{`"x" + context.customer.id`, `"xc-1"`},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			t.Parallel()
			p, err := expr.CompileValue(tc.src)
			require.NoError(t, err)
			got, err := p.Eval(in)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(got))
		})
	}
}

func TestValueErrors(t *testing.T) {
	t.Parallel()
	in, err := expr.ParseInputs(json.RawMessage(`{"a": 1}`), nil)
	require.NoError(t, err)
	for _, tc := range []struct{ name, src, want string }{
		{"missing field", "context.nope", "no such key"},
		{"missing result", "results.quote", "no such key"},
		{"not finite", "1.0 / 0.0", "has no JSON form"},
		{"type", "type(context)", "has no JSON form"},
		{"bytes", "b'abc'", "has no JSON form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := expr.CompileValue(tc.src)
			require.NoError(t, err)
			_, err = p.Eval(in)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, tc.src, "the error names the expression")
		})
	}
	for _, tc := range []struct{ name, src, want string }{
		{"empty", " ", "empty expression"},
		{"unknown variable", "ctx.a", "undeclared reference to 'ctx'"},
		{"syntax", "results.", "Syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := expr.CompileValue(tc.src)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
