package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/store"
)

// The REST/JSON API, tested as a platform that does not speak gRPC would
// use it: net/http and JSON, against a real coordinator and executor.

// restAPI is a coordinator serving --http-listen, and a client for it.
type restAPI struct {
	t      *testing.T
	rc     *runningCoordinator
	base   string
	client *http.Client
}

// startREST starts a coordinator with opts' security on a new SQLite file,
// serving HTTP on a loopback port, and stops it when the test ends.
func startREST(t *testing.T, opts coordinatorOptions) *restAPI {
	t.Helper()
	a := launchREST(t, opts)
	t.Cleanup(func() { require.NoError(t, a.rc.stop()) })
	return a
}

// launchREST is startREST for a test that stops the coordinator itself.
func launchREST(t *testing.T, opts coordinatorOptions) *restAPI {
	t.Helper()
	opts.listen, opts.httpListen, opts.log = "127.0.0.1:0", "127.0.0.1:0", discardLog()
	opts.store = storeFlags{db: filepath.Join(t.TempDir(), "tasker.db"), sync: "normal"}
	rc, err := startCoordinator(t.Context(), opts)
	require.NoError(t, err)
	return &restAPI{t: t, rc: rc, base: "http://" + rc.httpAddr, client: &http.Client{}}
}

// withExecutor starts an executor hosting the built-in handlers, registered
// with token, and waits until the coordinator lists it connected.
func (a *restAPI) withExecutor(token string) {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	_, _, done, err := startExecutor(ctx, executorOptions{
		listen: "127.0.0.1:0", coordinator: a.rc.addr, capacity: 4, log: discardLog(), token: token,
	})
	if err != nil {
		cancel()
		require.NoError(a.t, err)
	}
	a.t.Cleanup(func() {
		cancel()
		require.NoError(a.t, <-done)
	})
	require.Eventually(a.t, func() bool {
		var resp struct {
			Executors []struct {
				Connected bool `json:"connected"`
			} `json:"executors"`
		}
		a.call(http.MethodGet, "/api/v1/executors", "", nil, &resp)
		return len(resp.Executors) == 1 && resp.Executors[0].Connected
	}, 10*time.Second, 10*time.Millisecond)
}

// do sends body (nil: none) as JSON with an optional bearer token and
// returns the status and the body.
func (a *restAPI) do(method, path, token string, body any) (int, []byte) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(a.t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(a.t.Context(), method, a.base+path, r)
	require.NoError(a.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.client.Do(req)
	require.NoError(a.t, err)
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	return resp.StatusCode, out
}

// call is do for a call that must succeed, decoding the answer into out.
func (a *restAPI) call(method, path, token string, body, out any) {
	a.t.Helper()
	code, b := a.do(method, path, token, body)
	require.Equal(a.t, http.StatusOK, code, "%s %s: %s", method, path, b)
	if out != nil {
		require.NoError(a.t, json.Unmarshal(b, out), "%s", b)
	}
}

// refused asserts a call's HTTP status and the gateway's error body:
// the gRPC code (as a number) and a message naming want.
func (a *restAPI) refused(method, path, token string, body any, wantHTTP, wantCode int, want string) {
	a.t.Helper()
	code, b := a.do(method, path, token, body)
	require.Equal(a.t, wantHTTP, code, "%s %s: %s", method, path, b)
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	require.NoError(a.t, json.Unmarshal(b, &st), "the error body is JSON: %s", b)
	require.Equal(a.t, wantCode, st.Code, "%s", b)
	require.Contains(a.t, st.Message, want)
}

// metric reads one unlabelled sample from /metrics.
func (a *restAPI) metric(name, token string) float64 {
	a.t.Helper()
	code, body := a.do(http.MethodGet, "/metrics", token, nil)
	require.Equal(a.t, http.StatusOK, code)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(a.t, err)
			return f
		}
	}
	a.t.Fatalf("no metric %s", name)
	return 0
}

// apiTask is the part of a Task's JSON the tests read.
type apiTask struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	State     string `json:"state"`
	Steps     []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"steps"`
}

// restTemplates are registered by the REST tests: flow runs, blocked
// waits for a handler no executor hosts (with a step that may be bypassed,
// whose transition a watch then replays at once), broken fails for good.
var restTemplates = []string{`{"template": {
	"namespace": "rest", "name": "flow", "version": "1.0.0",
	"steps": [
		{"name": "first", "handler": "noop"},
		{"name": "second", "handler": "echo", "dependsOn": ["first"], "config": {"greeting": "hi"}}
	]}}`, `{"template": {
	"namespace": "rest", "name": "blocked", "version": "1.0.0",
	"steps": [
		{"name": "optional", "handler": "nobody_hosts_this", "skippable": true},
		{"name": "only", "handler": "nobody_hosts_this"}
	]}}`, `{"template": {
	"namespace": "rest", "name": "broken", "version": "1.0.0",
	"steps": [{"name": "only", "handler": "flaky", "config": {"fail_times": 1, "permanent": true}}]}}`,
}

func (a *restAPI) registerTemplates(token string) {
	a.t.Helper()
	for _, tmpl := range restTemplates {
		var resp struct {
			Template struct {
				Name string `json:"name"`
			} `json:"template"`
			Created bool `json:"created"`
		}
		a.call(http.MethodPost, "/api/v1/templates", token, json.RawMessage(tmpl), &resp)
		require.True(a.t, resp.Created)
		require.NotEmpty(a.t, resp.Template.Name)
	}
}

func (a *restAPI) create(token, name string, ctx map[string]any, bypass ...string) apiTask {
	a.t.Helper()
	var resp struct {
		Task    apiTask `json:"task"`
		Created bool    `json:"created"`
	}
	req := map[string]any{"namespace": "rest", "name": name, "context": ctx}
	if len(bypass) > 0 {
		req["bypassSteps"] = bypass
	}
	a.call(http.MethodPost, "/api/v1/tasks", token, req, &resp)
	require.True(a.t, resp.Created)
	require.Equal(a.t, name, resp.Task.Name)
	return resp.Task
}

// watchLine is one line of WatchTask's newline-delimited JSON.
type watchLine struct {
	Result *struct {
		Transition struct {
			StepName string `json:"stepName"`
			To       string `json:"toState"`
		} `json:"transition"`
		TaskState string `json:"taskState"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// openWatch starts GET /api/v1/tasks/{id}:watch and returns its lines as
// they come; cancel ends it.
func (a *restAPI) openWatch(ctx context.Context, id string) (*bufio.Scanner, func()) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/api/v1/tasks/"+id+":watch", nil)
	require.NoError(a.t, err)
	resp, err := a.client.Do(req)
	require.NoError(a.t, err)
	require.Equal(a.t, http.StatusOK, resp.StatusCode)
	return bufio.NewScanner(resp.Body), func() { _ = resp.Body.Close() }
}

func nextLine(t *testing.T, lines *bufio.Scanner) watchLine {
	t.Helper()
	require.True(t, lines.Scan(), "stream ended early: %v", lines.Err())
	var l watchLine
	require.NoError(t, json.Unmarshal(lines.Bytes(), &l), "each line is one JSON object: %s", lines.Bytes())
	return l
}

func TestRESTAPI(t *testing.T) {
	t.Parallel()
	a := startREST(t, coordinatorOptions{})
	a.withExecutor("")
	a.registerTemplates("")

	// Create, then watch it to the end as newline-delimited JSON.
	flow := a.create("", "flow", map[string]any{"order": 1})
	require.Equal(t, "rest", flow.Namespace)
	lines, closeWatch := a.openWatch(t.Context(), flow.ID)
	defer closeWatch()
	var last watchLine
	var steps []string
	for lines.Scan() {
		require.NoError(t, json.Unmarshal(lines.Bytes(), &last), "%s", lines.Bytes())
		require.Nil(t, last.Error, "%s", lines.Bytes())
		if tr := last.Result.Transition; tr.StepName != "" {
			steps = append(steps, tr.StepName+":"+tr.To)
		}
	}
	require.NoError(t, lines.Err())
	require.Equal(t, "STATE_COMPLETE", last.Result.TaskState, "the stream ends once the task is finished")
	require.Contains(t, steps, "first:STATE_COMPLETE")
	require.Contains(t, steps, "second:STATE_COMPLETE")

	// Get.
	var got struct {
		Task apiTask `json:"task"`
	}
	a.call(http.MethodGet, "/api/v1/tasks/"+flow.ID, "", nil, &got)
	require.Equal(t, flow.ID, got.Task.ID)
	require.Equal(t, "STATE_COMPLETE", got.Task.State)
	require.Len(t, got.Task.Steps, 2)

	// Cancel a task that waits for a handler nobody hosts.
	blocked := a.create("", "blocked", nil)
	var cancelled struct {
		Task apiTask `json:"task"`
	}
	a.call(http.MethodPost, "/api/v1/tasks/"+blocked.ID+":cancel", "", map[string]any{"reason": "not needed"}, &cancelled)
	require.Equal(t, "STATE_CANCELLED", cancelled.Task.State)

	// List with filters, in the query string.
	list := func(query string) []string {
		t.Helper()
		var resp struct {
			Tasks []apiTask `json:"tasks"`
		}
		a.call(http.MethodGet, "/api/v1/tasks?"+query, "", nil, &resp)
		var ids []string
		for _, task := range resp.Tasks {
			ids = append(ids, task.ID)
		}
		return ids
	}
	second := a.create("", "blocked", map[string]any{"n": 2})
	require.Equal(t, []string{flow.ID}, list("state=STATE_COMPLETE&namespace=rest"))
	require.Equal(t, []string{second.ID, blocked.ID}, list("namespace=rest&name=blocked"))
	require.Equal(t, []string{second.ID}, list("namespace=rest&name=blocked&pageSize=1"))
	require.Equal(t, []string{blocked.ID}, list("state=STATE_CANCELLED"))
	require.Empty(t, list("namespace=nobody"))

	// The basic view: the same task (a repeat of the create), without
	// its steps.
	var basic struct {
		Task    apiTask `json:"task"`
		Created bool    `json:"created"`
	}
	a.call(http.MethodPost, "/api/v1/tasks", "", map[string]any{"namespace": "rest", "name": "blocked", "context": map[string]any{"n": 2}, "view": "TASK_VIEW_BASIC"}, &basic)
	require.False(t, basic.Created)
	require.Equal(t, second.ID, basic.Task.ID)
	require.NotEmpty(t, second.Steps)
	require.Empty(t, basic.Task.Steps)

	// Refused calls: the gRPC code maps to its HTTP status, and the body
	// is the status as JSON. Retrying a complete task is
	// FailedPrecondition (9), which the gateway maps to 400.
	a.refused(http.MethodPost, "/api/v1/tasks/"+flow.ID+":retry", "", map[string]any{}, http.StatusBadRequest, 9, "complete")
	a.refused(http.MethodGet, "/api/v1/tasks/no-such-task", "", nil, http.StatusNotFound, 5, "no-such-task")
	a.refused(http.MethodPost, "/api/v1/tasks", "", map[string]any{"namespace": "rest", "name": "nothing"}, http.StatusNotFound, 5, "nothing")
	a.refused(http.MethodPost, "/api/v1/tasks", "", map[string]any{"namespace": "rest", "nmae": "flow"}, http.StatusBadRequest, 3, "nmae")
	a.refused(http.MethodGet, "/api/v1/tasks?state=STATE_NOPE", "", nil, http.StatusBadRequest, 3, "STATE_NOPE")
	// A query parameter that names no field of the request is refused, as
	// an unknown field of a body is: a misspelt filter would otherwise be
	// dropped and the answer would be every task.
	a.refused(http.MethodGet, "/api/v1/tasks?namespace=rest&stat=STATE_COMPLETE", "", nil, http.StatusBadRequest, 3, `"stat"`)
	a.refused(http.MethodGet, "/api/v1/task-counts?namespace=rest&nmae=blocked", "", nil, http.StatusBadRequest, 3, `"nmae"`)
	a.refused(http.MethodGet, "/api/v1/tasks/"+flow.ID+"?veiw=TASK_VIEW_BASIC", "", nil, http.StatusBadRequest, 3, `"veiw"`)
	// The path's own parameters are not query parameters: naming one in
	// the query is refused too rather than silently shadowed.
	a.refused(http.MethodGet, "/api/v1/tasks/"+flow.ID+"?id="+blocked.ID, "", nil, http.StatusBadRequest, 3, `"id"`)
	// A call that takes its request from the body takes no query.
	a.refused(http.MethodPost, "/api/v1/tasks/"+blocked.ID+":cancel?reason=late", "", map[string]any{}, http.StatusBadRequest, 3, "takes none")
	// Both spellings of a field name are accepted (proto and JSON).
	require.Equal(t, []string{second.ID}, list("namespace=rest&name=blocked&page_size=1"))
	require.Equal(t, []string{second.ID}, list("namespace=rest&name=blocked&contextEquals=n%3D2"))

	// An errored task can be retried from HTTP too.
	broken := a.create("", "broken", nil)
	watch, closeBroken := a.openWatch(t.Context(), broken.ID)
	defer closeBroken()
	for watch.Scan() {
	}
	var retried struct {
		Task apiTask `json:"task"`
	}
	a.call(http.MethodPost, "/api/v1/tasks/"+broken.ID+":retry", "", map[string]any{}, &retried)
	require.NotEqual(t, "STATE_ERROR", retried.Task.State)

	// Counts by state (int64 is a string in protojson).
	var counts struct {
		Counts []struct {
			State string `json:"state"`
			Count string `json:"count"`
		} `json:"counts"`
	}
	a.call(http.MethodGet, "/api/v1/task-counts?namespace=rest&name=blocked", "", nil, &counts)
	require.Len(t, counts.Counts, 2, "%+v", counts)
	require.Equal(t, "STATE_PENDING", counts.Counts[0].State)
	require.Equal(t, "1", counts.Counts[0].Count)
	require.Equal(t, "STATE_CANCELLED", counts.Counts[1].State)
	require.Equal(t, "1", counts.Counts[1].Count)
	// With the list's other filters, as query parameters: only the second
	// blocked task's context holds n=2.
	a.call(http.MethodGet, "/api/v1/task-counts?namespace=rest&name=blocked&context_equals=n%3D2", "", nil, &counts)
	require.Len(t, counts.Counts, 1, "%+v", counts)
	require.Equal(t, "STATE_PENDING", counts.Counts[0].State)
	require.Equal(t, "1", counts.Counts[0].Count)
	a.call(http.MethodGet, "/api/v1/task-counts?search="+blocked.ID, "", nil, &counts)
	require.Len(t, counts.Counts, 1, "%+v", counts)
	require.Equal(t, "STATE_CANCELLED", counts.Counts[0].State)

	// A bulk action in one call: every blocked task still pending is
	// cancelled, each named with its outcome; an empty filter is refused.
	var bulk struct {
		Outcomes []struct {
			ID   string `json:"id"`
			Done bool   `json:"done"`
		} `json:"outcomes"`
	}
	a.call(http.MethodPost, "/api/v1/tasks:cancel", "", map[string]any{"filter": map[string]any{"namespace": "rest", "name": "blocked"}, "reason": "backlog dropped"}, &bulk)
	require.Len(t, bulk.Outcomes, 1, "%+v", bulk)
	require.Equal(t, second.ID, bulk.Outcomes[0].ID)
	require.True(t, bulk.Outcomes[0].Done)
	a.refused(http.MethodPost, "/api/v1/tasks:cancel", "", map[string]any{}, http.StatusBadRequest, 3, "filter: give at least one of")

	// The OpenAPI document describes these paths.
	code, body := a.do(http.MethodGet, "/api/openapi.json", "", nil)
	require.Equal(t, http.StatusOK, code)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(body, &doc))
	for path, method := range map[string]string{
		"/api/v1/templates": "post", "/api/v1/tasks": "post", "/api/v1/tasks/{id}": "get",
		"/api/v1/tasks/{id}:cancel": "post", "/api/v1/tasks/{id}:watch": "get", "/api/v1/task-counts": "get",
		"/api/v1/tasks:cancel": "post", "/api/v1/tasks:retry": "post",
	} {
		require.Contains(t, doc.Paths[path], method, path)
	}

	code, body = a.do(http.MethodGet, "/healthz/live", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, string(body))
	code, body = a.do(http.MethodGet, "/healthz/ready", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, string(body))
}

// A watch is relayed message by message (the first arrives while the
// stream is still open), and ends, up to the coordinator, when the HTTP
// client goes away. (A stream's response starts with its first message:
// the gateway writes no header before it has something to say.)
func TestRESTAPIWatchEndsWhenClientGoesAway(t *testing.T) {
	t.Parallel()
	a := startREST(t, coordinatorOptions{})
	a.registerTemplates("")
	blocked := a.create("", "blocked", nil, "optional")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	lines, closeWatch := a.openWatch(ctx, blocked.ID)
	defer closeWatch()
	first := nextLine(t, lines)
	require.NotNil(t, first.Result)
	require.Equal(t, "optional", first.Result.Transition.StepName)
	require.Equal(t, "STATE_RESOLVED_MANUALLY", first.Result.Transition.To)
	require.Equal(t, 1.0, a.metric("tasker_api_streams_open", ""), "the stream is open, its task unfinished")

	cancel()
	require.Eventually(t, func() bool { return a.metric("tasker_api_streams_open", "") == 0 }, 10*time.Second, 10*time.Millisecond)
}

// A coordinator stopping ends the watches it relays instead of waiting
// for them.
func TestRESTAPIStopEndsWatches(t *testing.T) {
	t.Parallel()
	a := launchREST(t, coordinatorOptions{})
	a.registerTemplates("")
	blocked := a.create("", "blocked", nil, "optional")
	lines, closeWatch := a.openWatch(t.Context(), blocked.ID)
	defer closeWatch()
	nextLine(t, lines)

	stopped := make(chan error, 1)
	go func() { stopped <- a.rc.stop() }()
	for lines.Scan() {
	}
	require.NoError(t, <-stopped)
}

func TestRESTAPIHealthReady(t *testing.T) {
	t.Parallel()
	ready := func(a *restAPI) (int, string) {
		code, body := a.do(http.MethodGet, "/healthz/ready", "", nil)
		return code, string(body)
	}

	t.Run("StoreClosed", func(t *testing.T) {
		t.Parallel()
		a := startREST(t, coordinatorOptions{leaseTTL: time.Hour})
		code, _ := ready(a)
		require.Equal(t, http.StatusOK, code)
		require.NoError(t, a.rc.store.Close())
		code, body := ready(a)
		require.Equal(t, http.StatusServiceUnavailable, code, body)
		require.Contains(t, body, `"status":"unavailable"`)
		require.Contains(t, body, store.ErrClosed.Error())
		code, _ = a.do(http.MethodGet, "/healthz/live", "", nil)
		require.Equal(t, http.StatusOK, code, "the process still serves")
	})

	t.Run("LeaseLost", func(t *testing.T) {
		t.Parallel()
		// The lease outlives the test, so its keeper does not take a new
		// one while the test looks.
		a := startREST(t, coordinatorOptions{leaseTTL: time.Hour})
		_, err := a.rc.store.LeaseAcquire(t.Context(), &store.LeaseAcquireParams{
			CoordinatorID: a.rc.coord.ID(), TTL: time.Hour, Now: time.Now().UTC(),
		})
		require.NoError(t, err)
		code, body := ready(a)
		require.Equal(t, http.StatusServiceUnavailable, code, body)
		require.Contains(t, body, "is no longer live in the store")
	})
}

func TestRESTAPIWithTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := startREST(t, coordinatorOptions{security: coordinatorSecurityFlags{tokensFile: writeTokens(t, dir)}})

	// The coordinator decides, as for gRPC: no token is Unauthenticated
	// (16, 401), a read token writing is PermissionDenied (7, 403).
	a.refused(http.MethodGet, "/api/v1/tasks?namespace=demo", "", nil, http.StatusUnauthorized, 16, "no bearer token")
	a.refused(http.MethodGet, "/api/v1/tasks?namespace=demo", "not-a-token-anyone-issued", nil, http.StatusUnauthorized, 16, "")
	code, _ := a.do(http.MethodGet, "/api/v1/tasks?namespace=demo", "", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, a.base+"/api/v1/tasks", nil)
	require.NoError(t, err)
	resp, err := a.client.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, `Bearer realm="tasker"`, resp.Header.Get("WWW-Authenticate"))

	tmpl := json.RawMessage(`{"template": {"namespace": "demo", "name": "t", "version": "1.0.0", "steps": [{"name": "a", "handler": "noop"}]}}`)
	a.refused(http.MethodPost, "/api/v1/templates", readerToken, tmpl, http.StatusForbidden, 7, "")
	a.refused(http.MethodPost, "/api/v1/templates", executorToken, tmpl, http.StatusForbidden, 7, "")
	a.call(http.MethodPost, "/api/v1/templates", writerToken, tmpl, nil)
	var created struct {
		Task apiTask `json:"task"`
	}
	a.refused(http.MethodPost, "/api/v1/tasks", readerToken, map[string]any{"namespace": "demo", "name": "t"}, http.StatusForbidden, 7, "")
	a.call(http.MethodPost, "/api/v1/tasks", writerToken, map[string]any{"namespace": "demo", "name": "t"}, &created)

	// Reading, with the namespace rules of the RPCs: the reader holds
	// only "demo", so a list without a filter is of "demo".
	var got struct {
		Task apiTask `json:"task"`
	}
	a.call(http.MethodGet, "/api/v1/tasks/"+created.Task.ID, readerToken, nil, &got)
	require.Equal(t, created.Task.ID, got.Task.ID)
	var list struct {
		Tasks []apiTask `json:"tasks"`
	}
	a.call(http.MethodGet, "/api/v1/tasks", readerToken, nil, &list)
	require.Len(t, list.Tasks, 1)
	a.refused(http.MethodGet, "/api/v1/tasks?namespace=other", readerToken, nil, http.StatusForbidden, 7, "other")
	a.call(http.MethodGet, "/api/v1/task-counts", readerToken, nil, nil)
	a.refused(http.MethodPost, "/api/v1/tasks/"+created.Task.ID+":cancel", readerToken, map[string]any{}, http.StatusForbidden, 7, "")

	// Health checks and the API's description need no token.
	for _, path := range []string{"/healthz", "/healthz/live", "/healthz/ready", "/api/openapi.json"} {
		code, body := a.do(http.MethodGet, path, "", nil)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
	code, _ = a.do(http.MethodGet, "/metrics", "", nil)
	require.Equal(t, http.StatusUnauthorized, code, "metrics still need a read token")
}

// A request body larger than --max-request-bytes is refused before the
// gateway reads it all, as InvalidArgument.
func TestRESTAPIBoundsRequestBodies(t *testing.T) {
	t.Parallel()
	a := startREST(t, coordinatorOptions{limits: coordinator.Limits{MaxRequestBytes: 1024}})
	a.registerTemplates("")
	a.refused(http.MethodPost, "/api/v1/tasks", "", map[string]any{"namespace": "rest", "name": "blocked",
		"context": map[string]any{"pad": strings.Repeat("x", 2048)}}, http.StatusBadRequest, 3, "request body too large")
	a.create("", "blocked", map[string]any{"pad": strings.Repeat("x", 100)})
}

// TestRESTAPIEventsFromNowAnswersAtOnce subscribes with fromNow before
// anything happens: the response (200 and its headers) must come as soon
// as the coordinator has fixed the starting point, not with the first
// event, or a client could not know when it is safe to act and expect to
// see the events of its act. The task is created only after the response
// came, and its events must then arrive.
func TestRESTAPIEventsFromNowAnswersAtOnce(t *testing.T) {
	a := startREST(t, coordinatorOptions{})
	a.registerTemplates("")
	a.withExecutor("")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		a.base+"/api/v1/events?namespace=rest&fromNow=true&follow=true&kinds=EVENT_KIND_TASK", nil)
	require.NoError(t, err)
	resp, err := a.client.Do(req)
	require.NoError(t, err, "no response before the first event: the stream's headers must not wait for it")
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	task := a.create("", "flow", nil)
	lines := bufio.NewScanner(resp.Body)
	require.True(t, lines.Scan(), "stream ended early: %v", lines.Err())
	var got struct {
		Result struct {
			Event struct {
				Transition struct {
					TaskID string `json:"taskId"`
					To     string `json:"toState"`
				} `json:"transition"`
			} `json:"event"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(lines.Bytes(), &got), "%s", lines.Bytes())
	require.Equal(t, task.ID, got.Result.Event.Transition.TaskID, "the first event after subscribing is the new task's")
}
