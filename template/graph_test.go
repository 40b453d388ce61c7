package template_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

// dag builds a template from specs like "merge<-a,b" (a step and its
// parents) or "root" (no parents), in the order given.
func dag(specs ...string) *template.Template {
	tpl := &template.Template{Namespace: "test", Name: "dag", Version: "1.0.0"}
	for _, spec := range specs {
		name, deps, _ := strings.Cut(spec, "<-")
		s := template.Step{Name: name, Handler: "noop"}
		if deps != "" {
			s.DependsOn = strings.Split(deps, ",")
		}
		tpl.Steps = append(tpl.Steps, s)
	}
	return tpl
}

// The five reference shapes from the design, step names as Tasker had them,
// with the order TopoOrder must give (Kahn's algorithm, ties broken by
// template order).
var referenceShapes = []struct {
	name  string
	tpl   func() *template.Template
	order []string
}{
	{
		name: "linear",
		tpl: func() *template.Template {
			return dag("initialize_data", "validate_input<-initialize_data", "process_data<-validate_input",
				"transform_results<-process_data", "validate_output<-transform_results", "finalize_workflow<-validate_output")
		},
		order: []string{"initialize_data", "validate_input", "process_data", "transform_results", "validate_output", "finalize_workflow"},
	},
	{
		name: "diamond",
		tpl: func() *template.Template {
			return dag("start_workflow",
				"branch_one_process<-start_workflow", "branch_one_validate<-branch_one_process",
				"branch_two_process<-start_workflow", "branch_two_validate<-branch_two_process",
				"merge_branches<-branch_one_validate,branch_two_validate", "end_workflow<-merge_branches")
		},
		order: []string{"start_workflow", "branch_one_process", "branch_two_process", "branch_one_validate",
			"branch_two_validate", "merge_branches", "end_workflow"},
	},
	{
		name: "tree",
		tpl: func() *template.Template {
			return dag("root_initialization",
				"branch_a_setup<-root_initialization", "leaf_a1<-branch_a_setup", "leaf_a2<-branch_a_setup",
				"branch_b_setup<-root_initialization", "leaf_b1<-branch_b_setup", "leaf_b2<-branch_b_setup",
				"aggregate_results<-leaf_a1,leaf_a2,leaf_b1,leaf_b2")
		},
		order: []string{"root_initialization", "branch_a_setup", "branch_b_setup", "leaf_a1", "leaf_a2",
			"leaf_b1", "leaf_b2", "aggregate_results"},
	},
	{
		name: "parallel merge",
		tpl: func() *template.Template {
			return dag("fetch_user", "fetch_order", "fetch_inventory", "fetch_pricing",
				"process_user<-fetch_user", "process_order<-fetch_order",
				"merge_all_data<-process_user,process_order,fetch_inventory,fetch_pricing")
		},
		order: []string{"fetch_user", "fetch_order", "fetch_inventory", "fetch_pricing", "process_user",
			"process_order", "merge_all_data"},
	},
	{
		name: "mixed",
		tpl: func() *template.Template {
			return dag("init_auth", "init_config", "validate_permissions<-init_auth", "setup_environment<-init_config",
				"begin_processing<-validate_permissions,setup_environment",
				"process_critical_data<-begin_processing", "cleanup_temp_files<-begin_processing",
				"finalize_and_report<-process_critical_data,cleanup_temp_files")
		},
		order: []string{"init_auth", "init_config", "validate_permissions", "setup_environment",
			"begin_processing", "process_critical_data", "cleanup_temp_files", "finalize_and_report"},
	},
}

func TestReferenceShapes(t *testing.T) {
	t.Parallel()
	for _, shape := range referenceShapes {
		t.Run(shape.name, func(t *testing.T) {
			t.Parallel()
			tpl := shape.tpl()
			require.NoError(t, template.Validate(tpl, template.Limits{}))

			order, err := tpl.TopoOrder()
			require.NoError(t, err)
			require.Equal(t, shape.order, order)
			requireParentsFirst(t, tpl, order)

			idx := tpl.StepIndex()
			require.Len(t, idx, len(tpl.Steps))
			for i, s := range tpl.Steps {
				require.Equal(t, i, idx[s.Name])
			}

			requireChildrenMatch(t, tpl)
		})
	}
}

// requireParentsFirst checks order is a topological order of tpl.
func requireParentsFirst(t *testing.T, tpl *template.Template, order []string) {
	t.Helper()
	require.Len(t, order, len(tpl.Steps))
	pos := map[string]int{}
	for i, name := range order {
		_, dup := pos[name]
		require.False(t, dup, "step %q appears twice in %v", name, order)
		pos[name] = i
	}
	for _, s := range tpl.Steps {
		p, ok := pos[s.Name]
		require.True(t, ok, "step %q missing from %v", s.Name, order)
		for _, dep := range s.DependsOn {
			require.Less(t, pos[dep], p, "%q must come before %q in %v", dep, s.Name, order)
		}
	}
}

// requireChildrenMatch checks Children is exactly the inverse of depends_on,
// each list in template order.
func requireChildrenMatch(t *testing.T, tpl *template.Template) {
	t.Helper()
	children := tpl.Children()
	require.Len(t, children, len(tpl.Steps), "every step gets an entry")
	idx := tpl.StepIndex()
	edges := 0
	for _, s := range tpl.Steps {
		for _, dep := range s.DependsOn {
			require.Contains(t, children[dep], s.Name)
			edges++
		}
	}
	total := 0
	for parent, kids := range children {
		total += len(kids)
		require.True(t, slices.IsSortedFunc(kids, func(a, b string) int { return idx[a] - idx[b] }),
			"children of %q not in template order: %v", parent, kids)
	}
	require.Equal(t, edges, total)
}

func TestChildrenExact(t *testing.T) {
	t.Parallel()
	tpl := referenceShapes[2].tpl() // tree
	require.Equal(t, map[string][]string{
		"root_initialization": {"branch_a_setup", "branch_b_setup"},
		"branch_a_setup":      {"leaf_a1", "leaf_a2"},
		"branch_b_setup":      {"leaf_b1", "leaf_b2"},
		"leaf_a1":             {"aggregate_results"},
		"leaf_a2":             {"aggregate_results"},
		"leaf_b1":             {"aggregate_results"},
		"leaf_b2":             {"aggregate_results"},
		"aggregate_results":   nil,
	}, tpl.Children())
}

func TestChildrenToleratesInvalidTemplates(t *testing.T) {
	t.Parallel()
	// Validate refuses all of these; the helpers must still not misbehave.
	tpl := dag("a", "b<-a,a,ghost", "a<-b")
	require.Equal(t, map[string][]string{"a": {"b"}, "b": nil}, tpl.Children())
	require.Equal(t, map[string]int{"a": 0, "b": 1}, tpl.StepIndex())
}

func TestTopoOrderTemplateOrderBreaksTies(t *testing.T) {
	t.Parallel()
	// A parent listed after its child in the file: the child still follows.
	order, err := dag("late<-early", "zeta", "early").TopoOrder()
	require.NoError(t, err)
	require.Equal(t, []string{"zeta", "early", "late"}, order)
}

func TestTopoOrderErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		tpl     *template.Template
		wantErr string
	}{
		{"cycle", dag("a", "b<-a,d", "c<-b", "d<-c"), "topological order: cycle: b -> d -> c -> b"},
		{"self loop", dag("a<-a"), "topological order: cycle: a -> a"},
		{"unknown dependency", dag("a", "b<-nope"), `topological order: step "b" depends on unknown step "nope"`},
		{"duplicate name", dag("a", "b", "a"), `topological order: duplicate step name "a"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			order, err := tc.tpl.TopoOrder()
			require.EqualError(t, err, tc.wantErr)
			require.Nil(t, order)
		})
	}
}

func TestTopoOrderEmptyAndRepeatedDependency(t *testing.T) {
	t.Parallel()
	order, err := (&template.Template{}).TopoOrder()
	require.NoError(t, err)
	require.Empty(t, order)

	// A repeated depends_on entry (refused by Validate) must not make the
	// child wait for a parent twice.
	order, err = dag("a", "b<-a,a").TopoOrder()
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, order)
}

func TestTopoOrderLargeChain(t *testing.T) {
	t.Parallel()
	const n = 1000
	specs := []string{"s0"}
	for i := 1; i < n; i++ {
		specs = append(specs, "s"+strconv.Itoa(i)+"<-s"+strconv.Itoa(i-1))
	}
	slices.Reverse(specs) // worst case for template-order tie breaking
	tpl := dag(specs...)
	require.NoError(t, template.Validate(tpl, template.Limits{}))
	order, err := tpl.TopoOrder()
	require.NoError(t, err)
	require.Equal(t, "s0", order[0])
	require.Equal(t, "s"+strconv.Itoa(n-1), order[n-1])
	requireParentsFirst(t, tpl, order)

	// Close the loop: the cycle spans every step and starts at steps[0].
	tpl.Steps[n-1].DependsOn = []string{tpl.Steps[0].Name}
	err = template.Validate(tpl, template.Limits{})
	require.ErrorContains(t, err, `step "s999": depends_on: cycle: s999 -> s998 -> `)
	require.True(t, strings.HasSuffix(err.Error(), "s0 -> s999"), err.Error())
}
