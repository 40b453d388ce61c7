package templates_test

import (
	"encoding/json"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/examples/templates"
	"github.com/tasker-go/tasker/template"
)

// node is one step of an expected DAG and its parents.
type node struct {
	name    string
	parents []string
}

// shape is an expected template: its namespace and steps in file order.
type shape struct {
	namespace string
	steps     []node
}

// wantShapes returns every example's DAG, step by step in file order, with
// each step's parents: the reference shapes exactly as the design names
// them.
func wantShapes() map[string]shape {
	return map[string]shape{
		"charge_items.yaml": {"demo", []node{
			{"split", []string{}},
			{"charge", []string{"split"}},
			{"reconcile", []string{"charge"}},
		}},
		"order_fulfillment.yaml": {"demo", []node{
			{"validate", []string{}},
			{"charge", []string{"validate"}},
			{"reserve", []string{"validate"}},
			{"ship", []string{"charge", "reserve"}},
		}},
		"linear_workflow.yaml": {"tasker", []node{
			{"initialize_data", []string{}},
			{"validate_input", []string{"initialize_data"}},
			{"process_data", []string{"validate_input"}},
			{"transform_results", []string{"process_data"}},
			{"validate_output", []string{"transform_results"}},
			{"finalize_workflow", []string{"validate_output"}},
		}},
		"diamond_workflow.yaml": {"tasker", []node{
			{"start_workflow", []string{}},
			{"branch_one_process", []string{"start_workflow"}},
			{"branch_one_validate", []string{"branch_one_process"}},
			{"branch_two_process", []string{"start_workflow"}},
			{"branch_two_validate", []string{"branch_two_process"}},
			{"merge_branches", []string{"branch_one_validate", "branch_two_validate"}},
			{"end_workflow", []string{"merge_branches"}},
		}},
		"tree_workflow.yaml": {"tasker", []node{
			{"root_initialization", []string{}},
			{"branch_a_setup", []string{"root_initialization"}},
			{"leaf_a1", []string{"branch_a_setup"}},
			{"leaf_a2", []string{"branch_a_setup"}},
			{"branch_b_setup", []string{"root_initialization"}},
			{"leaf_b1", []string{"branch_b_setup"}},
			{"leaf_b2", []string{"branch_b_setup"}},
			{"aggregate_results", []string{"leaf_a1", "leaf_a2", "leaf_b1", "leaf_b2"}},
		}},
		"parallel_merge_workflow.yaml": {"tasker", []node{
			{"fetch_user", []string{}},
			{"fetch_order", []string{}},
			{"fetch_inventory", []string{}},
			{"fetch_pricing", []string{}},
			{"process_user", []string{"fetch_user"}},
			{"process_order", []string{"fetch_order"}},
			{"merge_all_data", []string{"process_user", "process_order", "fetch_inventory", "fetch_pricing"}},
		}},
		"mixed_workflow.yaml": {"tasker", []node{
			{"init_auth", []string{}},
			{"init_config", []string{}},
			{"validate_permissions", []string{"init_auth"}},
			{"setup_environment", []string{"init_config"}},
			{"begin_processing", []string{"validate_permissions", "setup_environment"}},
			{"process_critical_data", []string{"begin_processing"}},
			{"cleanup_temp_files", []string{"begin_processing"}},
			{"finalize_and_report", []string{"process_critical_data", "cleanup_temp_files"}},
		}},
	}
}

func TestAllParseAndValidate(t *testing.T) {
	t.Parallel()
	all, err := templates.All()
	require.NoError(t, err)
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	shapes := wantShapes()
	want := make([]string, 0, len(shapes))
	for name := range shapes {
		want = append(want, name)
	}
	require.ElementsMatch(t, want, names)

	for name, data := range all {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := template.Parse(data)
			require.NoError(t, err)
			require.NoError(t, template.Validate(tmpl, template.Limits{}))

			shape := shapes[name]
			require.Equal(t, shape.namespace, tmpl.Namespace)
			require.Equal(t, name, tmpl.Name+".yaml", "file is named after its template")
			require.Equal(t, "1.0.0", tmpl.Version)
			require.NotEmpty(t, tmpl.Description)
			require.Len(t, tmpl.Steps, len(shape.steps))
			for i, s := range tmpl.Steps {
				require.Equal(t, shape.steps[i].name, s.Name)
				parents := s.DependsOn
				if parents == nil {
					parents = []string{}
				}
				require.Equal(t, shape.steps[i].parents, parents, "parents of %s", s.Name)
				require.Contains(t, []string{"echo", "sleep", "flaky", "noop"}, s.Handler)
				if s.Handler == "sleep" {
					var cfg struct{ Ms int }
					require.NoError(t, json.Unmarshal(s.Config, &cfg))
					require.Positive(t, cfg.Ms, "sleep step %s needs a duration", s.Name)
				}
			}
		})
	}
}

// The first step of every parallel branch sleeps, so tests can see branches
// overlap.
func TestParallelBranchesSleep(t *testing.T) {
	t.Parallel()
	for file, steps := range map[string][]string{
		"diamond_workflow.yaml":        {"branch_one_process", "branch_two_process"},
		"tree_workflow.yaml":           {"branch_a_setup", "branch_b_setup"},
		"parallel_merge_workflow.yaml": {"fetch_user", "fetch_order", "fetch_inventory", "fetch_pricing"},
	} {
		data, err := fs.ReadFile(templates.FS(), file)
		require.NoError(t, err)
		tmpl, err := template.Parse(data)
		require.NoError(t, err)
		byName := map[string]template.Step{}
		for _, s := range tmpl.Steps {
			byName[s.Name] = s
		}
		for _, name := range steps {
			s := byName[name]
			require.Equal(t, "sleep", s.Handler, "%s: %s", file, name)
			require.JSONEq(t, `{"ms": 20}`, string(s.Config), "%s: %s", file, name)
		}
	}
}

func TestOrderFulfillment(t *testing.T) {
	t.Parallel()
	data, err := fs.ReadFile(templates.FS(), "order_fulfillment.yaml")
	require.NoError(t, err)
	tmpl, err := template.Parse(data)
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"string"}}}`, string(tmpl.ContextSchema))
	charge := tmpl.Steps[1]
	require.Equal(t, "flaky", charge.Handler)
	require.JSONEq(t, `{"fail_times":1}`, string(charge.Config))
	require.Equal(t, 3, charge.RetryLimit)
	require.Equal(t, template.Backoff{Initial: template.Duration(10e6), Multiplier: 2, Max: template.Duration(1e9)}, charge.Backoff)
	require.Equal(t, template.Duration(30e9), charge.Timeout)

	schema, err := template.CompileContextSchema(tmpl.ContextSchema)
	require.NoError(t, err)
	require.NoError(t, schema.Validate(json.RawMessage(`{"order_id":"A1"}`)))
	require.Error(t, schema.Validate(json.RawMessage(`{}`)))
}

func TestAllReturnsCopies(t *testing.T) {
	t.Parallel()
	first, err := templates.All()
	require.NoError(t, err)
	first["linear_workflow.yaml"][0] = 'X'
	second, err := templates.All()
	require.NoError(t, err)
	require.NotEqual(t, byte('X'), second["linear_workflow.yaml"][0])
}
