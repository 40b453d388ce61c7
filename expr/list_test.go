package expr

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestListItems(t *testing.T) {
	results := map[string]json.RawMessage{
		"split": json.RawMessage(`{"items":[{"sku":"a","qty":2},{"sku":"b","qty":0},{"sku":"c","qty":12345678901234567}]}`),
		"none":  nil,
	}
	ctx := json.RawMessage(`{"regions":["eu","us"],"n":3}`)
	for _, tc := range []struct {
		src, want, err string
	}{
		{src: `results.split.items`, want: `[{"qty":2,"sku":"a"},{"qty":0,"sku":"b"},{"qty":12345678901234567,"sku":"c"}]`},
		{src: `context.regions`, want: `["eu","us"]`},
		{src: `results.split.items.filter(i, i.qty > 0).map(i, i.sku)`, want: `["a","c"]`},
		{src: `[]`, want: `[]`},
		{src: `[{"k": 1.5}, null, true]`, want: `[{"k":1.5},null,true]`},
		{src: `results.split`, err: `evaluates to a map; want a list`},
		{src: `results.none`, err: `evaluates to null; want a list`},
		{src: `context.n`, err: `want a list`},
		{src: `results.missing.items`, err: `no such key: missing`},
	} {
		t.Run(tc.src, func(t *testing.T) {
			p, err := CompileList(tc.src)
			require.NoError(t, err)
			items, err := p.Items(ctx, results)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.ErrorContains(t, err, "for_each "+tc.src)
				return
			}
			require.NoError(t, err)
			got, err := json.Marshal(items)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(got))
		})
	}
}

func TestCompileListRefuses(t *testing.T) {
	for src, want := range map[string]string{
		"":            "empty expression",
		`"a"`:         "want a list",
		`results.x +`: "1:",
		`1 + 2`:       "want a list",
	} {
		_, err := CompileList(src)
		require.ErrorContains(t, err, want, src)
	}
}
