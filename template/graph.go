package template

import (
	"fmt"
	"slices"
	"strings"
)

// StepIndex maps each step name to its position in Steps, the order the
// store keeps them in. If a name repeats (which Validate refuses) the first
// position wins.
func (t *Template) StepIndex() map[string]int {
	idx := make(map[string]int, len(t.Steps))
	for i, s := range t.Steps {
		if _, seen := idx[s.Name]; !seen {
			idx[s.Name] = i
		}
	}
	return idx
}

// Children maps every step name to the steps that depend on it, in template
// order. Readiness discovery uses it: when a step finishes, only its
// children can have become ready. Unknown and repeated dependencies (which
// Validate refuses) are skipped.
func (t *Template) Children() map[string][]string {
	idx := t.StepIndex()
	children := make(map[string][]string, len(idx))
	for name := range idx {
		children[name] = nil
	}
	parents := t.parentIndexes(idx)
	for i, s := range t.Steps {
		if idx[s.Name] != i {
			continue // a repeated name; its first occurrence speaks for it
		}
		for _, p := range parents[i] {
			parent := t.Steps[p].Name
			children[parent] = append(children[parent], s.Name)
		}
	}
	return children
}

// parentIndexes lists, for each step, the positions of its distinct known
// parents in depends_on order.
func (t *Template) parentIndexes(idx map[string]int) [][]int {
	out := make([][]int, len(t.Steps))
	for i, s := range t.Steps {
		for _, dep := range s.DependsOn {
			p, ok := idx[dep]
			if ok && !slices.Contains(out[i], p) {
				out[i] = append(out[i], p)
			}
		}
	}
	return out
}

// TopoOrder returns the step names so that every step comes after all its
// parents; among steps whose parents are done, template order decides, so
// the result is deterministic. It fails on a repeated step name, an unknown
// dependency or a cycle (naming the cycle's path).
func (t *Template) TopoOrder() ([]string, error) {
	idx := t.StepIndex()
	if len(idx) != len(t.Steps) {
		for i, s := range t.Steps {
			if idx[s.Name] != i {
				return nil, fmt.Errorf("topological order: duplicate step name %q", s.Name)
			}
		}
	}
	for _, s := range t.Steps {
		for _, dep := range s.DependsOn {
			if _, ok := idx[dep]; !ok {
				return nil, fmt.Errorf("topological order: step %q depends on unknown step %q", s.Name, dep)
			}
		}
	}
	parents := t.parentIndexes(idx)
	waiting := make([]int, len(t.Steps)) // parents not yet placed
	children := make([][]int, len(t.Steps))
	for i, ps := range parents {
		waiting[i] = len(ps)
		for _, p := range ps {
			children[p] = append(children[p], i)
		}
	}
	// Kahn's algorithm with a FIFO seeded in template order: each step is
	// placed once its last parent is, which keeps the order stable.
	queue := make([]int, 0, len(t.Steps))
	for i, n := range waiting {
		if n == 0 {
			queue = append(queue, i)
		}
	}
	order := make([]string, 0, len(t.Steps))
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		order = append(order, t.Steps[i].Name)
		for _, c := range children[i] {
			waiting[c]--
			if waiting[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	if len(order) != len(t.Steps) {
		cycle := findCycle(t.Steps, parents)
		return nil, fmt.Errorf("topological order: %s", formatCycle(t.Steps, cycle))
	}
	return order, nil
}

// findCycle returns the positions of one dependency cycle, following
// depends_on edges (each element depends on the next, the last on the
// first), rotated to start at the member earliest in the template; nil if
// the graph is acyclic. The search visits steps and their dependencies in
// template and depends_on order, so the answer is deterministic.
func findCycle(steps []Step, parents [][]int) []int {
	const (
		unvisited = iota
		onPath
		done
	)
	color := make([]int, len(steps))
	var path []int
	var found []int
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = onPath
		path = append(path, i)
		for _, p := range parents[i] {
			switch color[p] {
			case onPath:
				start := slices.Index(path, p)
				found = slices.Clone(path[start:])
				return true
			case unvisited:
				if visit(p) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		color[i] = done
		return false
	}
	for i := range steps {
		if color[i] == unvisited && visit(i) {
			break
		}
	}
	if found == nil {
		return nil
	}
	least := slices.Index(found, slices.Min(found))
	return append(found[least:], found[:least]...)
}

// formatCycle renders a cycle as "cycle: a -> b -> a", where "->" reads
// "depends on".
func formatCycle(steps []Step, cycle []int) string {
	names := make([]string, 0, len(cycle)+1)
	for _, i := range cycle {
		names = append(names, steps[i].Name)
	}
	names = append(names, steps[cycle[0]].Name)
	return "cycle: " + strings.Join(names, " -> ")
}
