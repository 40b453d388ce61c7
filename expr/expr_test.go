package expr_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/expr"
)

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src, want string
	}{
		{"empty", "", "empty expression"},
		{"blank", "  \t", "empty expression"},
		{"syntax", "context.", "1:9: Syntax error"},
		{"unknown variable", "ctx.customer_id", "1:1: undeclared reference to 'ctx'"},
		{"list literal", "[1, 2]", "evaluates to list(int)"},
		{"map literal", "{'a': 1}", "evaluates to map(string, int)"},
		{"null literal", "null", "evaluates to null_type"},
		{"type", "type(context)", "evaluates to type(dyn)"},
		{"too long", "context.a + " + strings.Repeat("x", expr.MaxSourceLen), "the limit is 1024"},
		{"bad overload", "'a' + 1", "no matching overload"},
		{"comprehension", "context.tags.exists(t, t == 'x') ? 'a' : 'b'", "undeclared reference to 'exists'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := expr.Compile(tc.src)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "compile errors are one line")
		})
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	const ctx = `{"customer_id": "c-42", "account": 7, "big": 9007199254740993, "huge": 18446744073709551615,
		"price": 12.5, "whole": 42.0, "vip": true, "none": null, "tags": ["a"], "addr": {"city": "Lyon"}, "neg": -3}`
	cases := []struct {
		src, want string
	}{
		{"context.customer_id", "c-42"},
		{"context.account", "7"},
		{"context.big", "9007199254740993"}, // more digits than a double holds
		{"context.huge", "18446744073709551615"},
		{"context.price", "12.5"},
		{"context.whole", "42"},
		{"context.vip", "true"},
		{"context.neg", "-3"},
		{"context.addr.city", "Lyon"},
		{"context.tags[0]", "a"},
		{`context.addr.city + "/" + context.customer_id`, "Lyon/c-42"},
		{"string(context.account) + '-' + string(context.vip)", "7-true"},
		{"has(context.missing) ? context.missing : 'default'", "default"},
		{"1.0 / 3.0", "0.3333333333333333"},
		{"'literal'", "literal"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			t.Parallel()
			p, err := expr.Compile(tc.src)
			require.NoError(t, err)
			require.Equal(t, tc.src, p.Source())
			got, err := p.Key(json.RawMessage(ctx))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestKeyErrors(t *testing.T) {
	t.Parallel()
	const ctx = `{"none": null, "tags": ["a"], "addr": {"city": "Lyon"}, "n": 0}`
	cases := []struct {
		src, context, want string
	}{
		{"context.none", ctx, "evaluates to null"},
		{"context.missing", ctx, "no such key: missing"},
		{"context.addr.zip", ctx, "no such key: zip"},
		{"context.tags", ctx, "evaluates to a list"},
		{"context.addr", ctx, "evaluates to a map"},
		{"1.0 / double(context.n)", ctx, "want a finite number"},
		{"context.customer_id", `[1]`, "decode context"},
		{"context.customer_id", `{"customer_id": `, "decode context"},
		{"context.customer_id", ``, "no such key: customer_id"},
		{"context.customer_id", `null`, "no such key: customer_id"},
		{"dyn(timestamp('2026-01-01T00:00:00Z'))", ctx, "evaluates to a google.protobuf.Timestamp"},
		{"context.n * 2u", ctx, "no such overload"}, // JSON integers are ints, and CEL does not mix int and uint
	}
	for _, tc := range cases {
		t.Run(tc.src+" over "+tc.context, func(t *testing.T) {
			t.Parallel()
			p, err := expr.Compile(tc.src)
			require.NoError(t, err)
			_, err = p.Key(json.RawMessage(tc.context))
			require.Error(t, err)
			require.Contains(t, err.Error(), "key "+tc.src+": ")
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestKeyFromSharedContext(t *testing.T) {
	t.Parallel()
	c, err := expr.ParseContext(json.RawMessage(`{"a": "x", "b": 2}`))
	require.NoError(t, err)
	pa, err := expr.Compile("context.a")
	require.NoError(t, err)
	pb, err := expr.Compile("context.b")
	require.NoError(t, err)
	ka, err := pa.KeyFrom(c)
	require.NoError(t, err)
	kb, err := pb.KeyFrom(c)
	require.NoError(t, err)
	require.Equal(t, []string{"x", "2"}, []string{ka, kb})
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	p, err := expr.Compile(`context.region + ":" + string(context.id)`)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 8 {
		wg.Go(func() {
			for j := range 200 {
				want := "eu:" + strconv.Itoa(j)
				got, err := p.Key(json.RawMessage(`{"region": "eu", "id": ` + strconv.Itoa(j) + `}`))
				if err == nil && got != want {
					err = &mismatch{got, want}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

type mismatch struct{ got, want string }

func (m *mismatch) Error() string { return "got " + m.got + ", want " + m.want }

func BenchmarkKey(b *testing.B) {
	p, err := expr.Compile("context.customer_id")
	if err != nil {
		b.Fatal(err)
	}
	ctx := json.RawMessage(`{"customer_id": "c-42", "amount": 1999, "currency": "EUR", "items": [1, 2, 3]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Key(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyFrom(b *testing.B) {
	p, err := expr.Compile(`context.region + "/" + context.customer_id`)
	if err != nil {
		b.Fatal(err)
	}
	c, err := expr.ParseContext(json.RawMessage(`{"customer_id": "c-42", "region": "eu", "amount": 1999}`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.KeyFrom(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := expr.Compile("context.customer_id"); err != nil {
			b.Fatal(err)
		}
	}
}
