package coordinator

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
)

func TestParseContextMatch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want store.ContextMatch
		err  string
	}{
		{in: "order_id=A-1", want: store.ContextMatch{Path: []string{"order_id"}, Value: "A-1"}},
		{in: `order_id="A-1"`, want: store.ContextMatch{Path: []string{"order_id"}, Value: "A-1"}},
		{in: "amount=5", want: store.ContextMatch{Path: []string{"amount"}, Value: 5.0}},
		{in: "amount=-2.5e1", want: store.ContextMatch{Path: []string{"amount"}, Value: -25.0}},
		{in: `amount="5"`, want: store.ContextMatch{Path: []string{"amount"}, Value: "5"}},
		{in: "paid=true", want: store.ContextMatch{Path: []string{"paid"}, Value: true}},
		{in: "paid=false", want: store.ContextMatch{Path: []string{"paid"}, Value: false}},
		{in: "tier=null", want: store.ContextMatch{Path: []string{"tier"}, Value: nil}},
		{in: "note=", want: store.ContextMatch{Path: []string{"note"}, Value: ""}},
		{in: "expr=a=b", want: store.ContextMatch{Path: []string{"expr"}, Value: "a=b"}},
		{in: "customer.id=c-7", want: store.ContextMatch{Path: []string{"customer", "id"}, Value: "c-7"}},
		{in: "name= spaced ", want: store.ContextMatch{Path: []string{"name"}, Value: " spaced "}},
		{in: "order_id", err: "want PATH=VALUE"},
		{in: "=A-1", err: "the path before = is empty"},
		{in: "customer..id=1", err: `path "customer.." has an empty key`},
		{in: `a\.b=1`, want: store.ContextMatch{Path: []string{"a.b"}, Value: 1.0}},
		{in: `x.a\.b.c=y`, want: store.ContextMatch{Path: []string{"x", "a.b", "c"}, Value: "y"}},
		{in: `a\=b=c=d`, want: store.ContextMatch{Path: []string{"a=b"}, Value: "c=d"}},
		{in: `a\\b=1`, want: store.ContextMatch{Path: []string{`a\b`}, Value: 1.0}},
		{in: `a\\.b=1`, want: store.ContextMatch{Path: []string{`a\`, "b"}, Value: 1.0}},
		{in: `a\b=1`, err: "a backslash escapes only"},
		{in: `a\`, err: "a backslash escapes only"},
		{in: `a\=1`, err: "want PATH=VALUE"},
		{in: "customer.=1", err: "has an empty key"},
		{in: `a"b=1`, err: "cannot hold a double quote"},
		{in: `items=["A-1"]`, err: "is a JSON object or array"},
		{in: `customer={"id":"c-7"}`, err: "is a JSON object or array"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseContextMatch(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.NoError(t, got.Check())
		})
	}
}

func TestParseContextMatches(t *testing.T) {
	got, err := parseContextMatches("context_equals", []string{"a=1", "b.c=x"})
	require.NoError(t, err)
	require.Len(t, got, 2)

	_, err = parseContextMatches("context_equals", []string{"a=1", "b"})
	require.EqualError(t, err, `context_equals[1] "b": want PATH=VALUE, such as order_id=A-1`)

	_, err = parseContextMatches("context_equals", strings.Split(strings.Repeat("a=1,", maxContextMatches+1), ",")[:maxContextMatches+1])
	require.ErrorContains(t, err, "9 matches, at most 8")
}
