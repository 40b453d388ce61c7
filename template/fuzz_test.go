package template_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

// FuzzParse feeds arbitrary bytes through Parse and Validate: neither may
// panic, and whatever Validate accepts must have a topological order that
// places every step exactly once, parents first.
func FuzzParse(f *testing.F) {
	f.Add([]byte(orderFulfillment))
	f.Add([]byte(`{"namespace":"n","name":"t","version":"1.0.0","steps":[{"name":"a","handler":"h"}]}`))
	f.Add([]byte("namespace: n\nname: t\nversion: 1.0.0\nsteps:\n  - {name: a, handler: h, depends_on: [b]}\n  - {name: b, handler: h, depends_on: [a]}\n"))
	f.Add([]byte("namespace: n\nname: t\nversion: 1.0.0\nsteps:\n  - {name: a, handler: h, depends_on: [a, a]}\n"))
	f.Add([]byte("namespace: n\nname: t\nversion: 1.0.0\ncontext_schema: {$ref: '#'}\nsteps: [{name: a, handler: h, timeout: 1e308}]\n"))
	f.Add([]byte("steps: [{name: a, backoff: {initial: -1, multiplier: .nan}}]"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tpl, err := template.Parse(data)
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
	})
}
