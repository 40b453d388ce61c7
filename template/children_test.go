package template_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

func TestParseTaskRef(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ref  string
		want template.TaskRef
		err  string
	}{
		{ref: "billing/charge", want: template.TaskRef{Namespace: "billing", Name: "charge"}},
		{ref: "billing/charge@1.2.3", want: template.TaskRef{Namespace: "billing", Name: "charge", Version: "1.2.3"}},
		{ref: "charge", err: "want namespace/name"},
		{ref: "/charge", err: "namespace: required"},
		{ref: "billing/", err: "name: required"},
		{ref: "billing/ch arge", err: "contains ' '"},
		{ref: "billing/charge@1", err: "not a semantic version"},
		{ref: "billing/charge@", err: "not a semantic version"},
		{ref: "a/b/c", err: "name: \"b/c\" contains '/'"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			t.Parallel()
			got, err := template.ParseTaskRef(tc.ref)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.ErrorContains(t, err, "task:")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.ref, got.String())
		})
	}
}

func TestValidateChildStep(t *testing.T) {
	t.Parallel()
	base := func(edit func(s *template.Step)) *template.Template {
		tm := &template.Template{Namespace: "ns", Name: "parent", Version: "1.0.0", Steps: []template.Step{
			{Name: "quote", Handler: "quote"},
			{Name: "call", DependsOn: []string{"quote"}, Task: "billing/charge@1.0.0",
				TaskContext: map[string]string{"amount": "results.quote.total", "customer": "context.customer"}},
		}}
		edit(&tm.Steps[1])
		return tm
	}
	require.NoError(t, template.Validate(base(func(*template.Step) {}), template.Limits{}))
	require.NoError(t, template.Validate(base(func(s *template.Step) { s.TaskContext = nil; s.Task = "billing/charge" }), template.Limits{}))
	for _, tc := range []struct {
		name string
		edit func(s *template.Step)
		want string
	}{
		{"bad ref", func(s *template.Step) { s.Task = "charge" }, `step "call": task: "charge": want namespace/name`},
		{"handler too", func(s *template.Step) { s.Handler = "h" }, `step "call": handler: a step with task runs a child task`},
		{"wait too", func(s *template.Step) { s.WaitFor = &template.WaitFor{Signal: "x"} }, `step "call": wait_for:`},
		{"sleep too", func(s *template.Step) { s.Sleep = 5 }, `step "call": sleep:`},
		{"config", func(s *template.Step) { s.Config = []byte(`{"a":1}`) }, `step "call": config:`},
		{"timeout", func(s *template.Step) { s.Timeout = 5 }, `step "call": timeout:`},
		{"decision", func(s *template.Step) { s.Decision = true }, `step "call": decision:`},
		{"for_each", func(s *template.Step) { s.ForEach = "results.quote.lines" }, `step "call": for_each: a step runs one child task`},
		{"context without task", func(s *template.Step) { s.Task = ""; s.Handler = "h" }, `step "call": context: builds a child task's context, so it needs task`},
		{"bad expression", func(s *template.Step) { s.TaskContext["amount"] = "results." }, `step "call": context.amount: "results." does not compile`},
		{"empty field", func(s *template.Step) { s.TaskContext[""] = "1" }, `step "call": context: a field name is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := template.Validate(base(tc.edit), template.Limits{})
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestParseChildStep(t *testing.T) {
	t.Parallel()
	tm, err := template.Parse([]byte(`
namespace: shop
name: order
version: 1.0.0
steps:
  - name: quote
    handler: quote
  - name: charge
    depends_on: [quote]
    task: billing/charge@2.0.0
    context:
      amount: results.quote.total
      customer: context.customer_id
`))
	require.NoError(t, err)
	require.Equal(t, "billing/charge@2.0.0", tm.Steps[1].Task)
	require.Equal(t, map[string]string{"amount": "results.quote.total", "customer": "context.customer_id"}, tm.Steps[1].TaskContext)
	require.True(t, tm.Steps[1].IsChild())
	tm.Normalize()
	require.NoError(t, template.Validate(tm, template.Limits{}))
}

// A child's context mapping may read only its step's parents' results.
func TestChildContextReadsOnlyParents(t *testing.T) {
	tmpl := func(deps ...string) *template.Template {
		return &template.Template{Namespace: "ns", Name: "p", Version: "1.0.0", Steps: []template.Step{
			{Name: "quote", Handler: "h"},
			{Name: "call", DependsOn: deps, Task: "ns/child", TaskContext: map[string]string{"amount": "results.quote.total"}},
		}}
	}
	err := template.Validate(tmpl(), template.Limits{})
	var ve *template.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "context.amount", ve.Field)
	require.ErrorContains(t, err, `"quote" is not a parent`)
	require.NoError(t, template.Validate(tmpl("quote"), template.Limits{}))
}
