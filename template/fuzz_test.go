package template_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// FuzzParse feeds arbitrary bytes through Parse and Validate: neither may
// panic, and whatever Validate accepts must have a topological order that
// places every step exactly once, parents first, and must survive the trip
// through the API (see requireAPIRoundTrip). Seeds beyond the f.Add ones
// live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(orderFulfillment))
	f.Add([]byte(`{"namespace":"n","name":"t","version":"1.0.0","steps":[{"name":"a","handler":"h"}]}`))
	f.Add([]byte("namespace: n\nname: t\nversion: 1.0.0\nsteps:\n  - {name: a, handler: h, depends_on: [b]}\n  - {name: b, handler: h, depends_on: [a]}\n"))
	f.Add([]byte("namespace: n\nname: t\nversion: 1.0.0\nsteps:\n  - {name: a, handler: h, depends_on: [a, a]}\n"))
	f.Add([]byte("namespace: n\nname: t\nversion: 1.0.0\ncontext_schema: {$ref: '#'}\nsteps: [{name: a, handler: h, timeout: 1e308}]\n"))
	f.Add([]byte("steps: [{name: a, backoff: {initial: -1, multiplier: .nan}}]"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte(flowTemplate))
	f.Add([]byte("--- {namespace: n, name: a}\n...\n---\nnamespace: n\nname: b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// ParseAll agrees with Parse on a document it reads alone.
		all, allErr := template.ParseAll(data)
		tpl, err := template.Parse(data)
		if err == nil {
			require.NoError(t, allErr)
			require.Len(t, all, 1)
			require.Equal(t, template.Digest(tpl), template.Digest(all[0]))
		}
		if err != nil {
			require.Nil(t, tpl)
			return
		}
		template.Digest(tpl)
		if template.Validate(tpl, template.Limits{}) != nil {
			_, _ = tpl.TopoOrder() // may fail, must not panic
			tpl.Children()
			return
		}
		order, err := tpl.TopoOrder()
		require.NoError(t, err)
		requireParentsFirst(t, tpl, order)
		requireChildrenMatch(t, tpl)
		require.Regexp(t, hexSHA256, template.Digest(tpl))
		requireAPIRoundTrip(t, tpl)
	})
}

// requireAPIRoundTrip follows a valid template the way the CLI and the
// coordinator move it: to the API message and back (RegisterTemplate), to
// the stored JSON spec and back, then out again and back in (`template get
// -o json` applied again). The coordinator must accept what the CLI
// accepted, and re-applying what it hands out must be recognised as the same
// template (same Digest); otherwise the re-apply fails with AlreadyExists.
func requireAPIRoundTrip(t *testing.T, tpl *template.Template) {
	t.Helper()
	sent, err := templatepb.ToProto(tpl)
	require.NoError(t, err, "a valid template must convert to its API message")
	received, err := templatepb.FromProto(sent)
	require.NoError(t, err)
	require.NoError(t, template.Validate(received, template.Limits{}), "the coordinator must accept what Validate accepted locally")
	received.Normalize()
	spec, err := json.Marshal(received)
	require.NoError(t, err)
	var stored template.Template
	require.NoError(t, json.Unmarshal(spec, &stored), "stored spec %s", spec)
	require.Equal(t, template.Digest(received), template.Digest(&stored), "the stored spec must keep the digest")
	out, err := templatepb.ToProto(&stored)
	require.NoError(t, err)
	again, err := templatepb.FromProto(out)
	require.NoError(t, err)
	require.Equal(t, template.Digest(received), template.Digest(again), "re-applying a fetched template must be a no-op")
}
