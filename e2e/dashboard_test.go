package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromiumPath is where Debian's chromium package (installed by .ci/run)
// puts the browser.
const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds one browser action: a wait for the page to show
// something, a click, a screenshot.
const browserTimeout = 45 * time.Second

// dashboardTemplates are registered before any executor connects, so the
// first task waits visibly for one.
var dashboardTemplates = map[string]string{
	"checkout.yaml": `namespace: dash
name: checkout
version: 1.0.0
description: Validate, then charge (fails once, retried after 10ms) and reserve, then ship.
context_schema:
  type: object
  required: [order_id]
  additionalProperties: false
  properties:
    order_id: {type: string, minLength: 1}
steps:
  - {name: validate, handler: echo}
  - {name: charge, handler: flaky, depends_on: [validate], config: {fail_times: 1}, backoff: {initial: 10ms, multiplier: 2, max: 1s}}
  - {name: reserve, handler: sleep, depends_on: [validate], config: {ms: 30}}
  - {name: ship, handler: noop, depends_on: [charge, reserve]}
`,
	"flaky.yaml": `namespace: dash
name: flaky
version: 1.0.0
description: b fails its first attempt permanently, so the task ends in error until retried.
steps:
  - {name: a, handler: echo}
  - {name: b, handler: flaky, depends_on: [a], config: {fail_times: 1, permanent: true}}
  - {name: c, handler: noop, depends_on: [b]}
`,
	"gpu.yaml": `namespace: dash
name: gpu
version: 1.0.0
description: render needs a handler no executor hosts.
steps:
  - {name: prepare, handler: echo}
  - {name: render, handler: gpu_render, depends_on: [prepare]}
`,
}

// browser drives one headless Chromium tab on the dashboard.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	n     int
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// Uncaught exceptions in the page fail the test; other console output
	// is logged when it fails.
	messages := chromedp.Console(ctx)
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() {
				t.Errorf("uncaught exception in the dashboard: %s", m)
			} else {
				t.Logf("browser console: %s", m)
			}
		}
	}()
	// Kept after the test so the screenshots can be looked at.
	shots, err := os.MkdirTemp("", "tasker-dashboard-shots-")
	require.NoError(t, err)
	t.Logf("dashboard screenshots go to %s", shots)
	return &browser{t: t, ctx: ctx, base: base, shots: shots}
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.failed(what, err)
	}
}

func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.failed(what, err)
	}
	return v
}

// failed ends the test with what the page showed when an action failed.
func (b *browser) failed(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if buf, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		path := filepath.Join(b.shots, "failed.png")
		if os.WriteFile(path, buf, 0o644) == nil {
			b.t.Logf("the page when %q failed: %s", what, path)
		}
	}
	require.NoError(b.t, err, what)
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path))
}

func (b *browser) waitVisible(sel string) {
	b.t.Helper()
	b.do("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.do("click "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// clickNode clicks a step of the DAG once the graph has settled its first
// view (before that, a node can move between finding it and clicking it).
func (b *browser) clickNode(step string) {
	b.t.Helper()
	b.click(fmt.Sprintf(`.dag[data-placed="true"] .dag-node[data-step=%q]`, step))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	b.waitVisible(sel)
	return strings.TrimSpace(run(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// waitFor polls a JavaScript expression until it is truthy.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	run(b, what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(browserTimeout)))
}

func (b *browser) eval(expr string) {
	b.t.Helper()
	b.do("evaluate "+expr, chromedp.Evaluate[chromedp.Void](expr))
}

// setValue types into a React-controlled field: the value is set the way
// the browser sets it, then the input event React listens to is sent.
func (b *browser) setValue(sel, value string) {
	b.t.Helper()
	b.waitVisible(sel)
	s, _ := json.Marshal(sel)
	v, _ := json.Marshal(value)
	b.eval(fmt.Sprintf(`(() => {
		const el = document.querySelector(%s);
		const proto = el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
		Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, %s);
		el.dispatchEvent(new Event('input', { bubbles: true }));
	})()`, s, v))
}

func (b *browser) location() string {
	b.t.Helper()
	return run(b, "location", chromedp.Location())
}

// shot saves a screenshot of the whole page as NN-name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	b.n++
	buf := run(b, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	require.NoError(b.t, os.WriteFile(path, buf, 0o644))
	b.t.Logf("screenshot %s", path)
}

// countNodes is a JavaScript expression counting DAG nodes in a state.
func countNodes(state string) string {
	return fmt.Sprintf(`document.querySelectorAll('.dag-node[data-state="%s"]').length`, state)
}

// getTask reads task get -o json (or task create -o json) for the fields
// this test uses; unlike decodeTask it accepts fields it does not know,
// such as a waiting step's "waiting".
func getTask(t *testing.T, out string) taskJSON {
	t.Helper()
	var task taskJSON
	require.NoError(t, json.Unmarshal([]byte(out), &task), out)
	return task
}

// dashboardStepStats is what analytics reports per step, computed here
// from task get's transitions.
type dashboardStepStats struct{ attempts, retries, failures int }

// TestDashboard drives the dashboard in Chromium against a real
// coordinator and executor: a task created from a template's form (after
// the form refused a bad context at its field) waits for an executor and
// then turns complete live; a failed step shows its error and Retry task
// completes the task; a step whose handler no executor hosts says so; the
// executors page warns about that handler; the tasks list and its counts,
// and the analytics page, show what the test computes from task get.
func TestDashboard(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no browser at %s (Debian's chromium package; .ci/run installs it): skipping the dashboard test", chromiumPath)
	}
	dir := t.TempDir()
	coord, httpAddr := freeAddr(t), freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coord, "--http-listen", httpAddr,
		"--db", filepath.Join(dir, "tasker.db"), "--log-level", "debug")
	c := &cluster{t: t, coord: coord}
	base := "http://" + httpAddr

	// The HTTP listener serves the dashboard at / and the REST API under /api/v1/.
	var index string
	require.Eventually(t, func() bool {
		res, err := http.Get(base + "/")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		index = fmt.Sprintf("%d %s", res.StatusCode, b)
		return true
	}, 30*time.Second, 50*time.Millisecond, "the HTTP listener did not answer")
	require.Contains(t, index, `<div id="root">`,
		`the dashboard is not served at / on --http-listen: cmd/tasker/http.go must mount web.Handler() there; got %q`, index)
	res, err := http.Get(base + "/api/v1/templates")
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "the REST API is not served under /api/v1/ on --http-listen")

	for name, body := range dashboardTemplates {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	out := c.tasker("template", "apply", filepath.Join(dir, "checkout.yaml"), filepath.Join(dir, "flaky.yaml"), filepath.Join(dir, "gpu.yaml"))
	require.Equal(t, 3, strings.Count(out, "registered "), out)

	b := newBrowser(t, base)
	b.open("/")
	b.waitVisible("[data-counts]")

	// The form checks the context against the schema before sending it,
	// and shows the problem at the field.
	b.open("/templates/dash/checkout")
	b.waitVisible(".create-form textarea[name=context]")
	b.waitVisible(`.dag-node[data-step="ship"]`)
	b.setValue("textarea[name=context]", "{\n  \"order_id\": 42\n}")
	b.click(`[data-action="create"]`)
	msg := b.text(`[data-field-errors] li[data-path="/order_id"]`)
	require.Contains(t, msg, "line 2")
	require.Contains(t, msg, "order_id")
	require.Contains(t, msg, "must be string")
	require.Contains(t, b.location(), "/templates/dash/checkout", "nothing was sent")
	b.shot("template-form-refuses-a-bad-context")
	out = c.tasker("task", "list", "--namespace", "dash", "-o", "json")
	require.Empty(t, strings.TrimSpace(out), "a refused form creates no task")

	b.setValue("textarea[name=context]", `{"order_id": "o-1"}`)
	b.waitVisible(".ok-note")
	b.click(`[data-action="create"]`)
	b.waitFor("the form opens the new task", `/^\/tasks\/[^/]+$/.test(location.pathname)`)
	checkout := strings.TrimPrefix(b.location(), base+"/tasks/")

	// No executor yet: the task's first step waits, and says why.
	b.clickNode("validate")
	require.Contains(t, b.text(`[data-waiting="no_executor"]`), `"echo"`)
	require.Equal(t, "4", fmt.Sprint(run(b, "pending nodes", chromedp.Evaluate[int](countNodes("STATE_PENDING")))))
	b.shot("task-waits-for-an-executor")

	// An executor connects: the nodes turn complete while the page stays
	// open (the marker would be gone after a reload).
	b.eval(`window.__sameDocument = true`)
	start(t, "executor", "executor", "--listen", freeAddr(t), "--coordinator", coord, "--id", "dash-exec", "--capacity", "8", "--log-level", "debug")
	b.waitFor("every node turns complete live", countNodes("STATE_COMPLETE")+` === 4`)
	b.waitFor("the task's badge turns complete", `!!document.querySelector('.title-row .badge[data-state="STATE_COMPLETE"]')`)
	b.waitFor("the page was not reloaded", `window.__sameDocument === true`)
	// The waterfall shows charge's failed attempt, its backoff and its retry.
	b.waitFor("charge's backoff is drawn", `!!document.querySelector('[data-gantt-step="charge"] [data-kind="backoff"]')`)
	b.waitFor("the critical path is marked", `document.querySelectorAll('.gantt-row.critical').length >= 3`)
	b.open("/tasks/" + checkout + "?step=charge")
	b.waitVisible(`[data-step-panel="charge"]`)
	b.waitVisible(`[data-step-panel="charge"] .attempts tr.failed`)
	b.shot("task-complete-with-retried-step")
	require.Equal(t, "complete", getTask(t, c.tasker("task", "get", checkout, "-o", "json")).State)

	// A step that failed shows its error; Retry task completes the task.
	failed := getTask(t, c.tasker("task", "create", "dash/flaky", "--context", `{"n":0}`, "-o", "json")).ID
	require.Eventually(t, func() bool {
		return getTask(t, c.tasker("task", "get", failed, "-o", "json")).State == "error"
	}, 30*time.Second, 50*time.Millisecond)
	b.open("/tasks/" + failed)
	b.waitVisible(`.dag-node[data-step="b"][data-state="STATE_ERROR"]`)
	b.clickNode("b")
	stepErr := b.text(`[data-step-panel="b"] [data-step-error]`)
	require.Contains(t, stepErr, "FlakyFailure")
	require.Contains(t, stepErr, "flaky: attempt 1 fails on purpose (fail_times 1)")
	b.shot("task-failed-step")
	// The coordinator refuses to cancel a task in error (DESIGN: error goes
	// only to pending or resolved_manually), so the page does not offer it.
	b.waitFor("Cancel task is disabled for a task in error", `document.querySelector('[data-action="cancel"]').disabled`)
	b.click(`[data-action="retry"]`)
	b.click(`.modal [data-confirm]`)
	b.waitFor("the retried task completes", countNodes("STATE_COMPLETE")+` === 3`)
	b.waitFor("the task's badge turns complete", `!!document.querySelector('.title-row .badge[data-state="STATE_COMPLETE"]')`)
	b.shot("task-retried-and-complete")
	require.Equal(t, "complete", getTask(t, c.tasker("task", "get", failed, "-o", "json")).State)

	// A step whose handler no executor hosts says so at once.
	gpu := getTask(t, c.tasker("task", "create", "dash/gpu", "-o", "json")).ID
	b.open("/tasks/" + gpu + "?step=render")
	waiting := b.text(`[data-step-panel="render"] [data-waiting="no_executor"]`)
	require.Contains(t, waiting, `no connected executor hosts its handler "gpu_render"`)
	b.waitVisible(`.dag-node[data-step="render"][data-state="STATE_PENDING"]`)
	b.shot("task-step-waits-for-an-unhosted-handler")

	// More tasks of dash/flaky, left in error, for the list and analytics.
	ids := []string{failed}
	for i := 1; i <= 3; i++ {
		ids = append(ids, getTask(t, c.tasker("task", "create", "dash/flaky", "--context", fmt.Sprintf(`{"n":%d}`, i), "-o", "json")).ID)
	}
	tasks := make([]taskJSON, 0, len(ids))
	require.Eventually(t, func() bool {
		tasks = tasks[:0]
		for _, id := range ids {
			task := getTask(t, c.tasker("task", "get", id, "-o", "json"))
			if task.State != "complete" && task.State != "error" {
				return false
			}
			tasks = append(tasks, task)
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "the dash/flaky tasks did not finish")

	// The tasks list: every dash task, newest first, and the counts by state.
	b.open("/tasks?namespace=dash")
	b.waitFor("every dash task is listed", `document.querySelectorAll('tr[data-task]').length === 6`)
	first := run(b, "first row", chromedp.Evaluate[string](`document.querySelector('tr[data-task]').dataset.task`))
	require.Equal(t, ids[len(ids)-1], first, "newest first")
	b.waitFor("the counts arrive", `document.querySelector('[data-count="complete"] .count-n').textContent === '2'`)
	require.Equal(t, "3", b.text(`[data-count="error"] .count-n`))
	require.Equal(t, "1", b.text(`[data-count="in_progress"] .count-n`), "dash/gpu waits in progress")
	require.Equal(t, "6", b.text(`[data-count="all"] .count-n`))
	b.shot("tasks")
	// Pages opened one after another, each with a live stream: the
	// browser keeps earlier ones in its back-forward cache, and their
	// streams held its six connections to the host until every call of
	// the seventh page hung. A page closes its streams when hidden.
	for i := range 7 {
		b.open(fmt.Sprintf("/tasks?namespace=dash&state=error&round=%d", i))
		b.waitFor(fmt.Sprintf("page %d of 7 loads its tasks", i+1), `document.querySelectorAll('tr[data-task]').length === 3`)
	}
	b.waitVisible(".live-live")
	b.open("/tasks?q=" + failed)
	b.waitFor("search finds the task by id", `document.querySelectorAll('tr[data-task]').length === 1`)
	// A value in the context finds its task: typed into the filter, it
	// goes to the address (and the API) as given.
	b.open("/tasks?namespace=dash")
	b.waitFor("every dash task is listed again", `document.querySelectorAll('tr[data-task]').length === 6`)
	run(b, "type a context match", chromedp.SendKeys(`input[name="context"]`, "n=2"))
	b.click(`.filter-buttons button.primary`)
	b.waitFor("the context match finds one task", `location.search.includes('ctx=n%3D2') && document.querySelectorAll('tr[data-task]').length === 1`)
	require.Equal(t, ids[2], run(b, "the matching row", chromedp.Evaluate[string](`document.querySelector('tr[data-task]').dataset.task`)))
	// The counts take the same filters: they add up to the one task listed.
	b.waitFor("the counts follow the context match", `document.querySelector('[data-count="all"] .count-n').textContent === '1'`)
	b.shot("tasks-by-context")
	b.open("/tasks?namespace=dash&ctx=" + url.QueryEscape("n=[2]"))
	b.waitFor("a bad match says why", `document.body.textContent.includes('is a JSON object or array')`)

	// Analytics of dash/flaky over the last hour, against what task get says.
	finished, completed, errored := 0, 0, 0
	steps := map[string]*dashboardStepStats{}
	for _, task := range tasks {
		finished++
		switch task.State {
		case "complete":
			completed++
		case "error":
			errored++
		}
		for _, s := range task.Steps {
			st := steps[s.Name]
			if st == nil {
				st = &dashboardStepStats{}
				steps[s.Name] = st
			}
			dispatches := 0
			for _, tr := range s.Transitions {
				if tr.To == "in_progress" {
					dispatches++
				}
				if tr.From != nil && *tr.From == "in_progress" && tr.To == "error" {
					st.failures++
				}
			}
			st.attempts += dispatches
			st.retries += max(0, dispatches-1)
		}
	}
	require.Equal(t, 4, finished)
	require.Equal(t, 1, completed)
	b.open("/analytics/dash/flaky?window=1h")
	b.waitVisible(`[data-analytics="dash/flaky"]`)
	require.Equal(t, fmt.Sprint(finished), b.text(`[data-metric="tasks_finished"]`))
	require.Equal(t, fmt.Sprint(completed), b.text(`[data-metric="completed"]`))
	require.Equal(t, fmt.Sprint(errored), b.text(`[data-metric="errored"]`))
	require.Equal(t, fmt.Sprintf("%.1f%%", 100*float64(completed)/float64(finished)), b.text(`[data-metric="success_rate"]`))
	require.Equal(t, fmt.Sprintf("%.1f%%", 100*float64(errored)/float64(finished)), b.text(`[data-metric="error_rate"]`))
	for _, name := range []string{"a", "b", "c"} {
		st := steps[name]
		require.NotNil(t, st, name)
		row := fmt.Sprintf(`[data-step-row=%q]`, name)
		require.Equal(t, fmt.Sprint(st.attempts), b.text(row+` [data-col="attempts"]`), "attempts of %s", name)
		require.Equal(t, fmt.Sprint(st.retries), b.text(row+` [data-col="retries"]`), "retries of %s", name)
		require.Equal(t, fmt.Sprint(st.failures), b.text(row+` [data-col="failures"]`), "failures of %s", name)
	}
	require.Regexp(t, regexp.MustCompile(`^4\s`), b.text(`[data-error-row="0"]`), "b's one failure message, seen once per task")
	b.shot("analytics")

	// After an outage: the tasks list retries every task in error that its
	// filters keep, in one action (the three dash/flaky ones).
	b.open("/tasks?namespace=dash&name=flaky&state=error")
	b.waitFor("the bulk retry counts the tasks in error", `(() => { const el = document.querySelector('[data-action="retry-all"]'); return el && !el.disabled && el.textContent === 'Retry all 3'; })()`)
	b.click(`[data-action="retry-all"]`)
	b.waitVisible(".modal [data-confirm]")
	require.Equal(t, "Retry the 3 tasks in error?", b.text(".modal h3"))
	b.shot("tasks-retry-all-asks-first")
	b.setValue(".modal input", "partner API back")
	b.click(`.modal [data-confirm]`)
	require.Equal(t, "retried 3 of 3 tasks", b.text("[data-bulk-result]"))
	var stillError []string
	for _, task := range tasks {
		if task.State == "error" {
			stillError = append(stillError, task.ID)
		}
	}
	require.Len(t, stillError, 3)
	for _, id := range stillError {
		require.Eventually(t, func() bool {
			return getTask(t, c.tasker("task", "get", id, "-o", "json")).State == "complete"
		}, 30*time.Second, 50*time.Millisecond, "task %s retried from the list", id)
		require.Contains(t, c.tasker("task", "get", id, "-o", "json"), `"reason":"partner API back"`)
	}
	b.waitFor("the list empties as the tasks leave error", `document.querySelectorAll('tr[data-task]').length === 0`)
	b.shot("tasks-retried-all")

	// Resolving a failed decision step: the dialog says that "next" in the
	// results chooses its branches, and the one named runs while the
	// other is skipped.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "route.yaml"), []byte(`namespace: dash
name: route
version: 1.0.0
steps:
  - {name: route, handler: flaky, decision: true, config: {fail_times: 1, permanent: true}}
  - {name: domestic, handler: noop, depends_on: [route]}
  - {name: customs, handler: noop, depends_on: [route]}
`), 0o600))
	c.tasker("template", "apply", filepath.Join(dir, "route.yaml"))
	routed := getTask(t, c.tasker("task", "create", "dash/route", "-o", "json")).ID
	require.Eventually(t, func() bool {
		return getTask(t, c.tasker("task", "get", routed, "-o", "json")).State == "error"
	}, 30*time.Second, 50*time.Millisecond)
	b.open("/tasks/" + routed + "?step=route")
	b.click(`[data-step-panel="route"] [data-action="resolve"]`)
	require.Contains(t, b.text(".modal [data-decision-hint]"), "chooses which of its children run (domestic, customs)")
	b.setValue(".modal textarea", `{"next": ["domestic"]}`)
	b.shot("resolve-decision-chooses-a-branch")
	b.click(`.modal [data-confirm]`)
	b.waitFor("the routed task completes", `!!document.querySelector('.title-row .badge[data-state="STATE_COMPLETE"]')`)
	for _, s := range getTask(t, c.tasker("task", "get", routed, "-o", "json")).Steps {
		want := map[string]string{"route": "resolved_manually", "domestic": "complete", "customs": "skipped"}[s.Name]
		require.Equal(t, want, s.State, s.Name)
	}

	// The executors page: the executor with its handlers, and a warning
	// about the handler dash/gpu needs that no executor hosts.
	b.open("/executors")
	b.waitVisible(`[data-executor="dash-exec"]`)
	require.Contains(t, b.text(`[data-executor="dash-exec"]`), "flaky")
	b.shot("executors")
	require.Contains(t, b.text("[data-unhosted]"), "gpu_render")

	// Cancel all: the dash/gpu task, which waits in progress for a handler
	// nobody hosts.
	b.open("/tasks?namespace=dash&name=gpu&state=in_progress")
	b.waitFor("the bulk cancel counts the running task", `(() => { const el = document.querySelector('[data-action="cancel-all"]'); return el && !el.disabled && el.textContent === 'Cancel all 1'; })()`)
	b.click(`[data-action="cancel-all"]`)
	require.Equal(t, "Cancel the 1 in_progress task?", b.text(".modal h3"))
	b.click(`.modal [data-confirm]`)
	require.Equal(t, "cancelled 1 of 1 task", b.text("[data-bulk-result]"))
	require.Equal(t, "cancelled", getTask(t, c.tasker("task", "get", gpu, "-o", "json")).State)

	// A for_each step's instances are drawn below it, each with its index.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fan.yaml"), []byte(`namespace: dash
name: fan
version: 1.0.0
steps:
  - name: split
    handler: noop
  - name: charge
    handler: noop
    depends_on: [split]
    for_each: context.items
  - name: sum
    handler: noop
    depends_on: [charge]
`), 0o600))
	c.tasker("template", "apply", filepath.Join(dir, "fan.yaml"))
	var fan taskJSON
	require.NoError(t, json.Unmarshal([]byte(c.tasker("task", "create", "dash/fan", "--context", `{"items": [1, 2, 3]}`, "--wait", "-o", "json")), &fan))
	b.open("/tasks/" + fan.ID)
	b.waitVisible(`.dag-node[data-step="charge[2]"]`)
	b.waitFor("the three instances are drawn", `document.querySelectorAll('.dag-node[data-step^="charge["]').length === 3`)
	b.shot("for-each-instances")

	// Rerun from one instance: it runs again, with the reason recorded;
	// its siblings keep their results.
	b.open("/tasks/" + fan.ID + "?step=" + url.QueryEscape("charge[1]"))
	b.waitVisible(`[data-step-panel="charge[1]"]`)
	b.click(`[data-action="rerun"]`)
	b.setValue(".modal input", "refund issued")
	b.shot("rerun-from-an-instance")
	b.click(`.modal [data-confirm]`)
	require.Eventually(t, func() bool {
		out, _, err := c.run("task", "get", fan.ID, "-o", "json")
		if err != nil {
			return false
		}
		again := decodeTask(t, out)
		attempts := map[string]int{}
		for _, s := range again.Steps {
			attempts[s.Name] = s.Attempts
		}
		return again.State == "complete" && attempts["charge[1]"] == 2 && attempts["charge[0]"] == 1 && attempts["sum"] == 2
	}, 30*time.Second, 50*time.Millisecond, "the rerun from charge[1] ran it and sum again, and only them")

	// A step waiting for a signal says which, and Send signal completes it
	// with the payload; a payload that is not JSON is refused in the
	// dialog, and nothing is sent.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "approval.yaml"), []byte(`namespace: dash
name: approval
version: 1.0.0
steps:
  - {name: prepare, handler: noop}
  - {name: approve, depends_on: [prepare], wait_for: {signal: approved, timeout: 1h}}
  - {name: ship, handler: echo, depends_on: [approve], concurrency: [{key: '"all"', max_running: 2}]}
`), 0o600))
	c.tasker("template", "apply", filepath.Join(dir, "approval.yaml"))
	// The template's page says what a step without a handler does, and
	// what holds a step back.
	b.open("/templates/dash/approval")
	require.Equal(t, `waits for signal "approved", timeout 1 h 00 m`, b.text(`[data-step-runs="approve"]`))
	require.Contains(t, b.text(`[data-step-runs="ship"]`), `at most 2 running per "all"`)
	b.shot("template-with-a-wait")
	approval := getTask(t, c.tasker("task", "create", "dash/approval", "-o", "json")).ID
	approveStep := func() (state, waiting string, results json.RawMessage) {
		for _, s := range getTask(t, c.tasker("task", "get", approval, "-o", "json")).Steps {
			if s.Name == "approve" {
				if s.Waiting != nil {
					waiting = s.Waiting.Reason + ":" + s.Waiting.Key
				}
				return s.State, waiting, s.Results
			}
		}
		t.Fatalf("task %s has no step approve", approval)
		return "", "", nil
	}
	require.Eventually(t, func() bool {
		_, waiting, _ := approveStep()
		return waiting == "signal:approved"
	}, 30*time.Second, 50*time.Millisecond, "approve did not come to wait for its signal")
	// The task's overview lists the wait; its name opens the step.
	b.open("/tasks/" + approval)
	require.Contains(t, b.text(`[data-waits] [data-wait-step="approve"]`), `waiting for signal "approved"`)
	require.Contains(t, b.text(`.dag-node[data-step="approve"]`), "signal")
	b.shot("task-waits-for-a-signal")
	b.click(`[data-wait-step="approve"] button`)
	waiting = b.text(`[data-step-panel="approve"] [data-waiting="signal"]`)
	require.Regexp(t, `waiting for signal "approved", or until \d{4}-\d\d-\d\d .* \(its timeout\)`, waiting)
	b.click(`[data-step-panel="approve"] [data-action="signal"]`)
	b.setValue(".modal textarea", `{by: "ana"}`)
	b.click(`.modal [data-confirm]`)
	require.Contains(t, b.text(".modal .refusal"), "the payload is not valid JSON")
	b.shot("signal-payload-refused")
	state, waiting, _ := approveStep()
	require.Equal(t, "in_progress", state, "a refused payload sends nothing")
	require.Equal(t, "signal:approved", waiting, "a refused payload sends nothing")
	b.setValue(".modal textarea", `{"by": "ana"}`)
	b.click(`.modal [data-confirm]`)
	b.waitFor("the dialog closes", `!document.querySelector('.modal')`)
	b.waitFor("the task's badge turns complete", `!!document.querySelector('.title-row .badge[data-state="STATE_COMPLETE"]')`)
	b.shot("signal-sent-and-task-complete")
	state, _, results := approveStep()
	require.Equal(t, "complete", state)
	require.JSONEq(t, `{"by": "ana"}`, string(results), "approve's result is the signal's payload")

	// Schedules: the list and a schedule's page show what schedule get
	// says (its runs, each with its task, and its next fire times); Pause
	// and Resume act on it.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tick.yaml"), []byte(`namespace: dash
name: tick
version: 1.0.0
steps:
  - {name: tock, handler: noop}
`), 0o600))
	c.tasker("template", "apply", filepath.Join(dir, "tick.yaml"))
	c.tasker("schedule", "create", "hourly", "--template", "dash/tick", "--cron", "@hourly",
		"--timezone", "Europe/Paris", "--context", `{"region": "eu"}`)
	// Three hours back hold three hourly fire times, or two when the test
	// runs within a second after the hour: the page is checked against
	// what schedule get says either way.
	require.Contains(t, c.tasker("schedule", "backfill", "hourly", "--from", "3h", "--to", "1s"), "backfilled ")
	type scheduleJSON struct {
		Paused        bool     `json:"paused"`
		NextFireTimes []string `json:"next_fire_times"`
		Runs          []struct {
			TaskID string `json:"task_id"`
		} `json:"runs"`
	}
	getSchedule := func() scheduleJSON {
		var sc scheduleJSON
		out := c.tasker("schedule", "get", "hourly", "-o", "json", "--next", "10", "--runs", "50")
		require.NoError(t, json.Unmarshal([]byte(out), &sc), out)
		return sc
	}
	sched := getSchedule()
	require.GreaterOrEqual(t, len(sched.Runs), 2, "the backfill's runs")
	require.Len(t, sched.NextFireTimes, 10)
	b.open("/schedules")
	row := b.text(`[data-schedule="hourly"]`)
	for _, want := range []string{"dash/tick@highest", "@hourly", "Europe/Paris", "skip", "active"} {
		require.Contains(t, row, want)
	}
	b.shot("schedules")
	b.click(`[data-schedule="hourly"] a`)
	b.waitFor("the schedule's page opens", `location.pathname === '/schedules/hourly'`)
	b.waitFor("its runs are listed", fmt.Sprintf(`document.querySelectorAll('tr[data-run="task"]').length === %d`, len(sched.Runs)))
	links := run(b, "the runs' tasks", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('tr[data-run="task"] a')].map((a) => a.textContent.trim())`))
	want := make([]string, 0, len(sched.Runs))
	for _, r := range sched.Runs {
		want = append(want, r.TaskID)
	}
	require.Equal(t, want, links, "the runs, latest first, each with its task")
	// Each run shows its task's state as stored (a badge, as on the tasks
	// list).
	b.waitFor("each run shows its task's state", fmt.Sprintf(
		`document.querySelectorAll('tr[data-run="task"] td[data-run-state^="STATE_"] .badge').length === %d`, len(sched.Runs)))
	require.Equal(t, "10", fmt.Sprint(run(b, "next fire times", chromedp.Evaluate[int](
		`document.querySelectorAll('[data-next-fire-times] li').length`))))
	b.shot("schedule")
	b.click(`[data-action="pause"]`)
	b.click(`.modal [data-confirm]`)
	b.waitVisible(`[data-schedule-page="hourly"] [data-schedule-status="paused"]`)
	require.True(t, getSchedule().Paused, "Pause paused the schedule")
	b.shot("schedule-paused")
	b.click(`[data-action="resume"]`)
	b.click(`.modal [data-confirm]`)
	b.waitVisible(`[data-schedule-page="hourly"] [data-schedule-status="active"]`)
	require.False(t, getSchedule().Paused, "Resume resumed the schedule")

	// A step that runs a child task links to it, and the child links back
	// to its parent's step.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "parent.yaml"), []byte(`namespace: dash
name: parent
version: 1.0.0
steps:
  - {name: pack, task: dash/tick}
  - {name: label, handler: noop, depends_on: [pack]}
`), 0o600))
	c.tasker("template", "apply", filepath.Join(dir, "parent.yaml"))
	parent := getTask(t, c.tasker("task", "create", "dash/parent", "--wait", "-o", "json"))
	require.Equal(t, "complete", parent.State)
	var child string
	for _, s := range getTask(t, c.tasker("task", "get", parent.ID, "-o", "json")).Steps {
		if s.Name == "pack" {
			child = s.ChildTaskID
		}
	}
	require.NotEmpty(t, child, "task get names pack's child task")
	b.open("/tasks/" + parent.ID + "?step=pack")
	require.Equal(t, child, b.text(`[data-step-panel="pack"] [data-child-task]`))
	b.click(`[data-child-task] a`)
	b.waitFor("the child task opens", fmt.Sprintf(`location.pathname === '/tasks/%s'`, child))
	require.Equal(t, "child of "+parent.ID+" (its step pack)", b.text(`[data-parent-task]`))
	b.shot("child-task-links-to-its-parent")
	b.click(`[data-parent-task] a`)
	b.waitFor("the parent opens at its step", fmt.Sprintf(`location.pathname === '/tasks/%s' && location.search === '?step=pack'`, parent.ID))
	b.waitVisible(`[data-step-panel="pack"]`)

	// The rate limits, as limit set stored them.
	c.tasker("limit", "set", "stripe", "--rate", "100/s", "--burst", "20")
	c.tasker("limit", "set", "email", "--rate", "3/250ms")
	b.open("/limits")
	require.Equal(t, "100/s", b.text(`[data-limit="stripe"] [data-col="rate"]`))
	require.Equal(t, "20", b.text(`[data-limit="stripe"] [data-col="burst"]`))
	require.Equal(t, "3 per 250 ms", b.text(`[data-limit="email"] [data-col="rate"]`))
	require.Equal(t, "3", b.text(`[data-limit="email"] [data-col="burst"]`), "burst defaults to one period's units")
	b.shot("rate-limits")

	// The events page follows the stream from when it opened, newest first;
	// its kind filter and its pause hold.
	b.open("/events?namespace=dash")
	b.waitVisible(".live-live")
	// Each with a context of its own: the same template and context would
	// return the task created before.
	tick := getTask(t, c.tasker("task", "create", "dash/tick", "--context", `{"n": 1}`, "--wait", "-o", "json")).ID
	rows := fmt.Sprintf(`tr[data-task=%q]`, tick)
	b.waitFor("the task's completion arrives", fmt.Sprintf(
		`(() => { const r = document.querySelector('%s'); return r && r.dataset.step === '' && r.querySelector('[data-col="transition"]').textContent.includes('in_progress → complete'); })()`, rows))
	seen := run(b, "the task's events", chromedp.Evaluate[[]string](fmt.Sprintf(
		`[...document.querySelectorAll('%s')].reverse().map((r) => (r.dataset.step || 'task') + ' ' + r.querySelector('[data-col="transition"]').textContent)`, rows)))
	require.ElementsMatch(t, []string{
		"task pending → in_progress", "tock pending → in_progress", "tock in_progress → complete", "task in_progress → complete",
	}, seen, "each transition of the task once")
	require.Equal(t, "task in_progress → complete", seen[len(seen)-1], "newest first")
	require.True(t, run(b, "cursors descend", chromedp.Evaluate[bool](
		`[...document.querySelectorAll('tr[data-event]')].map((r) => BigInt(r.dataset.event)).every((c, i, a) => i === 0 || a[i-1] > c)`)),
		"the page lists events newest first, in commit order")
	b.shot("events")
	b.eval(`(() => {
		const el = document.querySelector('select[name=kind]');
		el.value = 'task';
		el.dispatchEvent(new Event('change', { bubbles: true }));
	})()`)
	b.waitFor("the filter applies", `location.search.includes('kind=task') && document.querySelectorAll('tr[data-task]').length === 0`)
	b.waitVisible(".live-live")
	b.click(`[data-action="pause-feed"]`)
	held := getTask(t, c.tasker("task", "create", "dash/tick", "--context", `{"n": 2}`, "--wait", "-o", "json")).ID
	b.waitFor("two task events are held", `document.querySelector('[data-action="resume-feed"]').textContent.includes('(2 new)')`)
	require.Equal(t, 0, run(b, "rows while paused", chromedp.Evaluate[int](`document.querySelectorAll('tr[data-task]').length`)))
	b.click(`[data-action="resume-feed"]`)
	b.waitFor("the held events show", fmt.Sprintf(`document.querySelectorAll('tr[data-task=%q]').length === 2`, held))
	require.Equal(t, 0, run(b, "step rows", chromedp.Evaluate[int](`document.querySelectorAll('tr[data-task]:not([data-step=""])').length`)),
		"kind=task shows no step transitions")
}

// TestDashboardWithTokens serves the dashboard with tokens on: it asks for
// a token, keeps it for the tab and sends it with every call; with a read
// token it shows a task but the coordinator refuses Retry task, the
// dialog says why, and every action is disabled from then on; with a
// write token the same retry goes through.
func TestDashboardWithTokens(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no browser at %s (Debian's chromium package; .ci/run installs it): skipping the dashboard test", chromiumPath)
	}
	const (
		reader   = "dash-reader-token-0123456789"
		writer   = "dash-writer-token-0123456789"
		executor = "dash-executor-token-0123456789"
	)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	require.NoError(t, os.WriteFile(tokens, []byte(`
- {name: reader, token: `+reader+`, namespaces: ["*"], access: read}
- {name: writer, token: `+writer+`, namespaces: ["*"], access: write}
- {name: executors, token: `+executor+`, access: executor}
`), 0o600))
	coord, httpAddr := freeAddr(t), freeAddr(t)
	start(t, "coordinator", "coordinator", "--listen", coord, "--http-listen", httpAddr, "--tokens-file", tokens,
		"--db", filepath.Join(dir, "tasker.db"), "--log-level", "debug")
	start(t, "executor", "executor", "--listen", freeAddr(t), "--coordinator", coord, "--id", "dash-exec",
		"--token", executor, "--log-level", "debug")
	as := []string{"TASKER_TOKEN=" + writer}
	require.Eventually(t, func() bool {
		out, _, err := runTasker(t, as, "executors", "-o", "json", "--coordinator", coord)
		return err == nil && strings.Contains(out, `"connected":true`)
	}, 30*time.Second, 100*time.Millisecond, "the executor did not connect")
	flaky := filepath.Join(dir, "flaky.yaml")
	require.NoError(t, os.WriteFile(flaky, []byte(dashboardTemplates["flaky.yaml"]), 0o600))
	_, errOut, err := runTasker(t, as, "template", "apply", flaky, "--coordinator", coord)
	require.NoError(t, err, errOut)
	out, errOut, err := runTasker(t, as, "task", "create", "dash/flaky", "-o", "json", "--coordinator", coord)
	require.NoError(t, err, errOut)
	id := getTask(t, out).ID
	require.Eventually(t, func() bool {
		out, _, err := runTasker(t, as, "task", "get", id, "-o", "json", "--coordinator", coord)
		return err == nil && getTask(t, out).State == "error"
	}, 30*time.Second, 50*time.Millisecond)

	b := newBrowser(t, "http://"+httpAddr)
	b.open("/tasks/" + id)
	// Refused without a token: the dashboard asks for one.
	b.waitVisible(`input[name="token"]`)
	b.shot("asks-for-a-token")
	b.setValue(`input[name="token"]`, reader)
	b.click(`.modal button[type="submit"]`)
	b.waitVisible(`.dag-node[data-step="b"][data-state="STATE_ERROR"]`)
	b.waitFor("the token is kept for the tab", fmt.Sprintf(`sessionStorage.getItem('tasker.token') === %q`, reader))

	// A read token sees everything, but the coordinator refuses its retry.
	b.click(`[data-action="retry"]`)
	b.click(`.modal [data-confirm]`)
	refusal := b.text(".modal .refusal")
	require.Contains(t, refusal, "PermissionDenied")
	b.shot("read-token-refused")
	b.click(`.modal-actions button:not([data-confirm])`)
	b.waitFor("actions are disabled after the refusal",
		`document.querySelector('[data-action="retry"]').disabled && document.querySelector('[data-action="cancel"]').disabled`)
	require.Contains(t, b.text(".note.warn"), "This token can look but not act")
	b.shot("read-token-cannot-act")
	out, _, err = runTasker(t, as, "task", "get", id, "-o", "json", "--coordinator", coord)
	require.NoError(t, err)
	require.Equal(t, "error", getTask(t, out).State, "the refused retry changed nothing")

	// The schedules' pages too: the read token sees a schedule, and its
	// Pause is refused and changes nothing.
	_, errOut, err = runTasker(t, as, "schedule", "create", "nightly", "--template", "dash/flaky", "--cron", "0 3 * * *",
		"--coordinator", coord)
	require.NoError(t, err, errOut)
	b.open("/schedules/nightly")
	b.waitVisible(`[data-schedule-page="nightly"] [data-schedule-status="active"]`)
	b.click(`[data-action="pause"]`)
	b.click(`.modal [data-confirm]`)
	require.Contains(t, b.text(".modal .refusal"), "PermissionDenied")
	b.click(`.modal-actions button:not([data-confirm])`)
	b.waitFor("Pause is disabled after the refusal", `document.querySelector('[data-action="pause"]').disabled`)
	out, errOut, err = runTasker(t, as, "schedule", "get", "nightly", "-o", "json", "--coordinator", coord)
	require.NoError(t, err, errOut)
	require.Contains(t, out, `"paused":false`, "the refused pause changed nothing")
	b.open("/tasks/" + id)
	b.waitVisible(`.dag-node[data-step="b"][data-state="STATE_ERROR"]`)

	// Another token, with write access, retries the task.
	b.click(`header.top button.link`)
	b.waitVisible(`input[name="token"]`)
	b.setValue(`input[name="token"]`, writer)
	b.click(`.modal button[type="submit"]`)
	b.click(`[data-action="retry"]`)
	b.click(`.modal [data-confirm]`)
	b.waitFor("the retried task completes", countNodes("STATE_COMPLETE")+` === 3`)
	b.shot("write-token-retried")
}
