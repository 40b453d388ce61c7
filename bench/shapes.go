package bench

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// Template identity shared by every bench template. Versions never change:
// re-registering an identical template is a no-op, so a store reused across
// runs keeps one template per shape.
const (
	TemplateNamespace = "bench"
	TemplateVersion   = "1.0.0"
	// NoopHandler is the only handler bench templates use: it returns at
	// once, so what is measured is the orchestrator, not the work.
	NoopHandler = "noop"
	// DefaultFanout is the width of the fanout shape when none is given.
	DefaultFanout = 100
)

// node is one step of a shape and the names of its parents.
type node struct {
	name    string
	parents []string
}

// shapeNodes maps a shape to its steps in template order. The names are
// Tasker's (see examples/templates), so a bench task reads like the
// workflow it imitates.
func shapeNodes(shape string, fanout int) ([]node, error) {
	type edges = []node
	switch shape {
	case "linear4", "linear6":
		names := []string{"initialize_data", "validate_input", "process_data", "transform_results", "validate_output", "finalize_workflow"}
		if shape == "linear4" {
			names = names[:4]
		}
		out := edges{{names[0], nil}}
		for i := 1; i < len(names); i++ {
			out = append(out, node{names[i], []string{names[i-1]}})
		}
		return out, nil
	case "diamond":
		return edges{
			{"start_workflow", nil},
			{"branch_one_process", []string{"start_workflow"}},
			{"branch_one_validate", []string{"branch_one_process"}},
			{"branch_two_process", []string{"start_workflow"}},
			{"branch_two_validate", []string{"branch_two_process"}},
			{"merge_branches", []string{"branch_one_validate", "branch_two_validate"}},
			{"end_workflow", []string{"merge_branches"}},
		}, nil
	case "tree":
		return edges{
			{"root_initialization", nil},
			{"branch_a_setup", []string{"root_initialization"}},
			{"leaf_a1", []string{"branch_a_setup"}},
			{"leaf_a2", []string{"branch_a_setup"}},
			{"branch_b_setup", []string{"root_initialization"}},
			{"leaf_b1", []string{"branch_b_setup"}},
			{"leaf_b2", []string{"branch_b_setup"}},
			{"aggregate_results", []string{"leaf_a1", "leaf_a2", "leaf_b1", "leaf_b2"}},
		}, nil
	case "parallel-merge":
		return edges{
			{"fetch_user", nil},
			{"fetch_order", nil},
			{"fetch_inventory", nil},
			{"fetch_pricing", nil},
			{"process_user", []string{"fetch_user"}},
			{"process_order", []string{"fetch_order"}},
			{"merge_all_data", []string{"process_user", "process_order", "fetch_inventory", "fetch_pricing"}},
		}, nil
	case "mixed":
		return edges{
			{"init_auth", nil},
			{"init_config", nil},
			{"validate_permissions", []string{"init_auth"}},
			{"setup_environment", []string{"init_config"}},
			{"begin_processing", []string{"validate_permissions", "setup_environment"}},
			{"process_critical_data", []string{"begin_processing"}},
			{"cleanup_temp_files", []string{"begin_processing"}},
			{"finalize_and_report", []string{"process_critical_data", "cleanup_temp_files"}},
		}, nil
	case "fanout":
		if fanout < 1 {
			return nil, fmt.Errorf("fanout must be at least 1, got %d", fanout)
		}
		out := edges{{"start", nil}}
		leaves := make([]string, fanout)
		for i := range leaves {
			leaves[i] = fmt.Sprintf("leaf_%04d", i+1)
			out = append(out, node{leaves[i], []string{"start"}})
		}
		return append(out, node{"finish", leaves}), nil
	case "mapreduce":
		// The same width as fanout, decided at run time: the task's context
		// carries the list (MapItems), and one for_each step becomes an
		// instance per item.
		if fanout < 1 {
			return nil, fmt.Errorf("fanout must be at least 1, got %d", fanout)
		}
		return edges{{"start", nil}, {"map", []string{"start"}}, {"finish", []string{"map"}}}, nil
	default:
		return nil, fmt.Errorf("unknown shape %q (want one of %v)", shape, ShapeNames())
	}
}

// ShapeNames lists the workflow shapes Template accepts.
func ShapeNames() []string {
	return []string{"linear4", "linear6", "diamond", "tree", "parallel-merge", "mixed", "fanout", "mapreduce"}
}

// MapItemsField is the context field holding the mapreduce shape's list.
const MapItemsField = "items"

// MapItems is the list a mapreduce task maps over: fanout numbers.
func MapItems(fanout int) *structpb.Value {
	vals := make([]*structpb.Value, fanout)
	for i := range vals {
		vals[i] = structpb.NewNumberValue(float64(i))
	}
	return structpb.NewListValue(&structpb.ListValue{Values: vals})
}

// Template builds the template for a shape with every step on the noop
// handler. fanout is only read for the fanout shape (1 → fanout → 1). The
// name encodes the shape (and width), so runs of different shapes against
// one store never collide.
func Template(shape string, fanout int) (*coordinatorv1.TaskTemplate, error) {
	nodes, err := shapeNodes(shape, fanout)
	if err != nil {
		return nil, err
	}
	name := "bench_" + shape
	if shape == "fanout" {
		name = fmt.Sprintf("bench_fanout_%d", fanout)
	}
	if shape == "mapreduce" {
		name = "bench_mapreduce" // its width is in the context, not the template
	}
	t := &coordinatorv1.TaskTemplate{
		Namespace:   TemplateNamespace,
		Name:        name,
		Version:     TemplateVersion,
		Description: "tasker bench: shape " + shape + ", every step a noop",
	}
	for _, n := range nodes {
		t.Steps = append(t.Steps, &coordinatorv1.StepTemplate{
			Name:      n.name,
			Handler:   NoopHandler,
			DependsOn: slices.Clone(n.parents),
		})
		if shape == "mapreduce" && n.name == "map" {
			t.Steps[len(t.Steps)-1].ForEach = "context." + MapItemsField
		}
	}
	return t, nil
}

// Flow control that bench's --flow adds to a template: a task-level
// concurrency key and a rate limit drawn by every step, both keyed by the
// task's tenant, set so loose they never hold a task back. What the run
// measures against the same shape without them is their bookkeeping.
const (
	// FlowLimit is the rate limit flow templates draw on.
	FlowLimit = "bench"
	// FlowTenants is how many tenant values tasks spread over.
	FlowTenants = 16
)

// WithFlow adds flow control to t: a concurrency key over context.tenant
// allowing maxRunning per tenant, and a draw of one unit of FlowLimit per
// step, also per tenant.
func WithFlow(t *coordinatorv1.TaskTemplate, maxRunning int) *coordinatorv1.TaskTemplate {
	t.Name += "_flow"
	t.Description += ", with a concurrency key and a rate limit"
	t.Concurrency = []*coordinatorv1.Concurrency{{Key: "context.tenant", MaxRunning: int32(maxRunning)}}
	for _, st := range t.Steps {
		st.RateLimits = []*coordinatorv1.RateLimitUse{{Name: FlowLimit, Key: "context.tenant"}}
	}
	return t
}
