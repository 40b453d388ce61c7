package bench

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/examples/templates"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// edges renders a template's DAG as "parent->child" strings plus lone
// roots, for comparing shapes whatever their handlers.
func edges(t *template.Template) []string {
	var out []string
	for _, s := range t.Steps {
		if len(s.DependsOn) == 0 {
			out = append(out, "root:"+s.Name)
		}
		for _, p := range s.DependsOn {
			out = append(out, p+"->"+s.Name)
		}
	}
	slices.Sort(out)
	return out
}

func TestShapesAreValidNoopTemplates(t *testing.T) {
	t.Parallel()
	wantSteps := map[string]int{
		"linear4": 4, "linear6": 6, "diamond": 7, "tree": 8, "parallel-merge": 7, "mixed": 8, "fanout": 12, "mapreduce": 3,
	}
	require.ElementsMatch(t, ShapeNames(), slices.Collect(maps.Keys(wantSteps)))
	for _, shape := range ShapeNames() {
		p, err := Template(shape, 10)
		require.NoError(t, err, shape)
		require.Len(t, p.GetSteps(), wantSteps[shape], shape)
		for _, s := range p.GetSteps() {
			require.Equal(t, NoopHandler, s.GetHandler())
		}
		tmpl, err := templatepb.FromProto(p)
		require.NoError(t, err, shape)
		require.NoError(t, template.Validate(tmpl, template.Limits{}), shape)
	}
}

func TestShapesMatchTaskerExamples(t *testing.T) {
	t.Parallel()
	files, err := templates.All()
	require.NoError(t, err)
	for shape, file := range map[string]string{
		"linear6": "linear_workflow.yaml", "diamond": "diamond_workflow.yaml", "tree": "tree_workflow.yaml",
		"parallel-merge": "parallel_merge_workflow.yaml", "mixed": "mixed_workflow.yaml",
	} {
		want, err := template.Parse(files[file])
		require.NoError(t, err, file)
		p, err := Template(shape, 0)
		require.NoError(t, err)
		got, err := templatepb.FromProto(p)
		require.NoError(t, err)
		require.Equal(t, edges(want), edges(got), shape)
	}
}

func TestFanoutShape(t *testing.T) {
	t.Parallel()
	p, err := Template("fanout", 3)
	require.NoError(t, err)
	got, err := templatepb.FromProto(p)
	require.NoError(t, err)
	require.Equal(t, "bench_fanout_3", got.Name)
	require.Equal(t, []string{
		"leaf_0001->finish", "leaf_0002->finish", "leaf_0003->finish",
		"root:start", "start->leaf_0001", "start->leaf_0002", "start->leaf_0003",
	}, edges(got))

	_, err = Template("fanout", -1)
	require.Error(t, err)
	_, err = Template("spiral", 0)
	require.ErrorContains(t, err, fmt.Sprintf("%v", ShapeNames()))
}
