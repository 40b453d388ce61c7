package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	templates "github.com/tasker-go/tasker/examples/templates"
	"github.com/tasker-go/tasker/template"
)

// Every chaos step gets many attempts and a short backoff: kills and
// partitions consume attempts too, and with retry_limit 10 the expected end
// of every task is complete, so anything else is a finding.
const chaosRetryLimit = 10

func chaosBackoff() template.Backoff {
	return template.Backoff{
		Initial:    template.Duration(10 * time.Millisecond),
		Multiplier: 2,
		Max:        template.Duration(200 * time.Millisecond),
	}
}

// maxRandomSteps bounds the size of a generated DAG.
const maxRandomSteps = 30

// chaosShapes returns Tasker's five reference shapes from examples/templates
// with the chaos retry policy on every step.
func chaosShapes() ([]*template.Template, error) {
	files, err := templates.All()
	if err != nil {
		return nil, err
	}
	names := []string{"linear_workflow", "diamond_workflow", "tree_workflow", "parallel_merge_workflow", "mixed_workflow"}
	out := make([]*template.Template, 0, len(names))
	for _, name := range names {
		data, ok := files[name+".yaml"]
		if !ok {
			return nil, fmt.Errorf("examples/templates has no %s.yaml", name)
		}
		tmpl, err := template.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for i := range tmpl.Steps {
			tmpl.Steps[i].RetryLimit = chaosRetryLimit
			tmpl.Steps[i].Backoff = chaosBackoff()
		}
		out = append(out, tmpl)
	}
	return out, nil
}

// randomTemplate builds a DAG of 1..maxRandomSteps steps in which each step
// depends on a random subset of the earlier ones. The density of edges is
// drawn per template, so some DAGs are wide and shallow and others nearly a
// chain. Half of them get decision points (addDecisions).
func randomTemplate(rng *rand.Rand, k int) *template.Template {
	n := 1 + rng.IntN(maxRandomSteps)
	density := []float64{0.05, 0.15, 0.3, 0.5}[rng.IntN(4)]
	tmpl := &template.Template{
		Namespace:   "chaos",
		Name:        fmt.Sprintf("random_%02d", k),
		Version:     "1.0.0",
		Description: fmt.Sprintf("generated DAG of %d steps, edge density %.2f", n, density),
		Steps:       make([]template.Step, n),
	}
	for i := range n {
		s := template.Step{
			Name:       fmt.Sprintf("s%02d", i),
			RetryLimit: chaosRetryLimit,
			Backoff:    chaosBackoff(),
		}
		for j := range i {
			if rng.Float64() < density {
				s.DependsOn = append(s.DependsOn, fmt.Sprintf("s%02d", j))
			}
		}
		switch rng.IntN(4) {
		case 0:
			s.Handler = "noop"
		case 1:
			s.Handler = "echo"
		case 2:
			s.Handler = "sleep"
			s.Config = json.RawMessage(fmt.Sprintf(`{"ms":%d}`, 1+rng.IntN(30)))
		default:
			s.Handler = "flaky"
			s.Config = json.RawMessage(fmt.Sprintf(`{"fail_times":%d}`, 1+rng.IntN(2)))
		}
		tmpl.Steps[i] = s
	}
	if rng.IntN(2) == 0 {
		addDecisions(rng, tmpl)
	}
	if rng.IntN(2) == 0 {
		addForEach(rng, tmpl)
	}
	if rng.IntN(3) == 0 {
		addWait(rng, tmpl)
	}
	return tmpl
}

// chaosSignal is the signal a chaos template's wait step waits for; the
// submitter sends it to every task once created (see signalWithRetry).
const chaosSignal = "go"

// addForEach turns up to two handler steps (not decisions) into for_each
// steps over a list whose length depends on the task (context.n), from
// empty to chaosMaxItems, so instances, empty lists and their joins are
// all exercised; flaky ones fail per instance.
func addForEach(rng *rand.Rand, tmpl *template.Template) {
	var candidates []int
	for i, s := range tmpl.Steps {
		if !s.Decision && s.Handler != "" {
			candidates = append(candidates, i)
		}
	}
	rng.Shuffle(len(candidates), func(a, b int) { candidates[a], candidates[b] = candidates[b], candidates[a] })
	for _, i := range candidates[:min(2, len(candidates))] {
		width := 1 + rng.IntN(chaosMaxItems)
		items := make([]string, width)
		for k := range items {
			items[k] = fmt.Sprint(k)
		}
		// Between 0 and width items, by the task's place in the plan.
		tmpl.Steps[i].ForEach = fmt.Sprintf("[%s].filter(i, i < context.n %% %d)", strings.Join(items, ", "), width+1)
	}
}

// chaosMaxItems bounds a chaos for_each list.
const chaosMaxItems = 8

// addWait turns one handler step (not a decision or for_each) into a wait
// for chaosSignal.
func addWait(rng *rand.Rand, tmpl *template.Template) {
	var candidates []int
	for i, s := range tmpl.Steps {
		if !s.Decision && s.ForEach == "" && s.Handler != "" {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 {
		return
	}
	s := &tmpl.Steps[candidates[rng.IntN(len(candidates))]]
	s.Handler, s.Config, s.WaitFor = "", nil, &template.WaitFor{Signal: chaosSignal}
}

// waitsForSignal reports whether tasks of tmpl need chaosSignal.
func waitsForSignal(tmpl *template.Template) bool {
	return slices.ContainsFunc(tmpl.Steps, func(s template.Step) bool { return s.WaitFor != nil })
}

// addDecisions turns up to two steps that have children into decision
// steps, each choosing a random subset of its children (now and then
// none), so some branches of the DAG are skipped and some joins run after
// a skipped parent.
func addDecisions(rng *rand.Rand, tmpl *template.Template) {
	children := tmpl.Children()
	var candidates []int
	for i, s := range tmpl.Steps {
		if len(children[s.Name]) > 0 {
			candidates = append(candidates, i)
		}
	}
	rng.Shuffle(len(candidates), func(a, b int) { candidates[a], candidates[b] = candidates[b], candidates[a] })
	for _, i := range candidates[:min(2, len(candidates))] {
		s := &tmpl.Steps[i]
		next := []string{}
		for _, c := range children[s.Name] {
			if rng.IntN(2) == 0 {
				next = append(next, c)
			}
		}
		cfg, _ := json.Marshal(map[string][]string{"next": next})
		s.Handler, s.Config, s.Decision = "decide", cfg, true
	}
}

// planName is how a template is named in the plan and the report.
func planName(t *template.Template) string { return t.Namespace + "/" + t.Name }

// describeTemplate is a one-line summary for the test log.
func describeTemplate(t *template.Template) string {
	handlers := map[string]int{}
	edges, decisions, forEach, waits := 0, 0, 0, 0
	for _, s := range t.Steps {
		handlers[s.Handler]++
		edges += len(s.DependsOn)
		if s.Decision {
			decisions++
		}
		if s.ForEach != "" {
			forEach++
		}
		if s.WaitFor != nil {
			waits++
		}
	}
	delete(handlers, "")
	keys := make([]string, 0, len(handlers))
	for h := range handlers {
		keys = append(keys, h)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, h := range keys {
		parts[i] = fmt.Sprintf("%s=%d", h, handlers[h])
	}
	return fmt.Sprintf("%s steps=%d edges=%d decisions=%d for_each=%d waits=%d %s", planName(t), len(t.Steps), edges, decisions, forEach, waits, strings.Join(parts, " "))
}
