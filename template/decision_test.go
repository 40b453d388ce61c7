package template_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

const shipping = `
namespace: demo
name: shipping
version: 1.0.0
steps:
  - name: route
    handler: echo
    decision: true
  - name: customs
    handler: noop
    depends_on: [route]
  - name: ship
    handler: noop
    depends_on: [route]
  - name: notify
    handler: noop
    depends_on: [customs, ship]
`

// decision: true survives YAML, JSON and the API's proto, and a template
// without it keeps the digest it had before the field existed.
func TestDecisionRoundTrips(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, shipping)
	require.True(t, tpl.Steps[0].Decision)
	require.False(t, tpl.Steps[1].Decision)
	require.NoError(t, template.Validate(tpl, template.Limits{}))

	asJSON, err := json.Marshal(tpl)
	require.NoError(t, err)
	require.Contains(t, string(asJSON), `"decision":true`)
	require.Equal(t, 1, countOf(string(asJSON), `"decision"`), "omitted where false")
	fromJSON := mustParse(t, string(asJSON))
	require.Equal(t, tpl, fromJSON)

	p, err := templatepb.ToProto(tpl)
	require.NoError(t, err)
	require.True(t, p.GetSteps()[0].GetDecision())
	require.False(t, p.GetSteps()[1].GetDecision())
	back, err := templatepb.FromProto(p)
	require.NoError(t, err)
	require.True(t, back.Steps[0].Decision)
	require.Equal(t, template.Digest(tpl), template.Digest(back))

	plain := mustParse(t, shipping)
	plain.Steps[0].Decision = false
	require.NotEqual(t, template.Digest(tpl), template.Digest(plain), "decision is part of the content")
	raw, err := json.Marshal(plain)
	require.NoError(t, err)
	require.NotContains(t, string(raw), "decision", "a template without decisions is written as before")
}

func countOf(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			n++
		}
	}
	return n
}
