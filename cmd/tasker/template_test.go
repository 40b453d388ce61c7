package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

const applyYAML = `
namespace: demo
name: order_fulfillment
version: 1.0.0
description: Validate, charge and reserve in parallel, then ship.
context_schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  - name: validate
    handler: echo
  - name: charge
    handler: flaky
    depends_on: [validate]
    config: {fail_times: 1, card: {brand: visa}}
    retry_limit: 5
    backoff: {initial: 10ms, multiplier: 2.5, max: 1s}
    timeout: 30s
  - name: reserve
    handler: sleep
    depends_on: [validate]
    retryable: false
    skippable: true
    backoff: {initial: 250ms}
`

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// wantApplied is applyYAML as the API must receive it: durations as
// Durations, config and schema as Structs, and optional fields set only
// where the file sets them.
func wantApplied(t *testing.T) *coordinatorv1.TaskTemplate {
	return &coordinatorv1.TaskTemplate{
		Namespace:   "demo",
		Name:        "order_fulfillment",
		Version:     "1.0.0",
		Description: "Validate, charge and reserve in parallel, then ship.",
		ContextSchema: mustStruct(t, map[string]any{
			"type":       "object",
			"required":   []any{"order_id"},
			"properties": map[string]any{"order_id": map[string]any{"type": "string"}},
		}),
		Steps: []*coordinatorv1.StepTemplate{
			{Name: "validate", Handler: "echo"},
			{
				Name: "charge", Handler: "flaky", DependsOn: []string{"validate"},
				Config:     mustStruct(t, map[string]any{"fail_times": 1, "card": map[string]any{"brand": "visa"}}),
				RetryLimit: proto.Int32(5),
				Backoff: &coordinatorv1.Backoff{
					Initial:    durationpb.New(10 * time.Millisecond),
					Multiplier: 2.5,
					Max:        durationpb.New(time.Second),
				},
				Timeout: durationpb.New(30 * time.Second),
			},
			{
				Name: "reserve", Handler: "sleep", DependsOn: []string{"validate"},
				Retryable: proto.Bool(false),
				Skippable: true,
				Backoff:   &coordinatorv1.Backoff{Initial: durationpb.New(250 * time.Millisecond)},
			},
		},
	}
}

func TestTemplateApply(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	f := &fakeCoordinator{registerTemplate: func(r *coordinatorv1.RegisterTemplateRequest) (*coordinatorv1.RegisterTemplateResponse, error) {
		if r.GetValidateOnly() {
			return &coordinatorv1.RegisterTemplateResponse{Template: r.GetTemplate(), Created: calls.Load() == 0}, nil
		}
		return &coordinatorv1.RegisterTemplateResponse{Template: r.GetTemplate(), Created: calls.Add(1) == 1}, nil
	}}
	addr := serve(t, f)
	yamlPath := writeFile(t, "t.yaml", applyYAML)

	res := runCLI(t, addr, "template", "apply", yamlPath)
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "registered demo/order_fulfillment@1.0.0\n", res.stdout)

	// The same template as JSON, read from stdin, converts identically.
	tmpl, err := template.Parse([]byte(applyYAML))
	require.NoError(t, err)
	jsonPath := writeFile(t, "t.json", mustJSON(t, tmpl))
	res = runCLI(t, addr, "template", "apply", jsonPath)
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "unchanged demo/order_fulfillment@1.0.0\n", res.stdout)

	// Each apply checks, then registers.
	reqs := f.requests()
	require.Len(t, reqs, 4)
	for i, r := range reqs {
		req := r.(*coordinatorv1.RegisterTemplateRequest)
		require.Equal(t, i%2 == 0, req.GetValidateOnly(), i)
		requireProtoEqual(t, wantApplied(t), req.GetTemplate())
	}
}

func TestTemplateApplyStdin(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{registerTemplate: func(r *coordinatorv1.RegisterTemplateRequest) (*coordinatorv1.RegisterTemplateResponse, error) {
		return &coordinatorv1.RegisterTemplateResponse{Template: r.GetTemplate(), Created: true}, nil
	}}
	addr := serve(t, f)
	env := cliEnvFor(nil)
	env.Stdin = strings.NewReader(applyYAML)
	res := runCLIEnv(t, env, "--coordinator", addr, "template", "apply", "-")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "registered demo/order_fulfillment@1.0.0\n", res.stdout)
	require.Len(t, f.requests(), 2)
}

func TestTemplateApplyBadFileSendsNothing(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{}
	addr := serve(t, f)
	good := writeFile(t, "good.yaml", applyYAML)
	bad := writeFile(t, "bad.yaml", "namespace: demo\nname: x\nversion: 1.0.0\nstpes: []\n")

	res := runCLI(t, addr, "template", "apply", good, bad)
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: "+bad+`:4: stpes: unknown field; did you mean "steps"?`+"\n", res.stderr)
	require.Empty(t, res.stdout)
	require.Empty(t, f.requests(), "no template may be registered when any file is bad")

	res = runCLI(t, addr, "template", "apply", filepath.Join(t.TempDir(), "missing.yaml"))
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "no such file")

	notObject := writeFile(t, "cfg.yaml", "namespace: demo\nname: x\nversion: 1.0.0\nsteps:\n  - {name: a, handler: echo, config: [1]}\n")
	res = runCLI(t, addr, "template", "apply", notObject)
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: "+notObject+`: step "a": config: must be a JSON object, got an array`+"\n", res.stderr)
	require.Empty(t, f.requests())
}

func TestRPCErrorFormat(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{registerTemplate: func(*coordinatorv1.RegisterTemplateRequest) (*coordinatorv1.RegisterTemplateResponse, error) {
		return nil, status.Error(codes.InvalidArgument, `step "charge": depends_on: unknown step "x"`)
	}}
	addr := serve(t, f)
	path := writeFile(t, "t.yaml", applyYAML)
	res := runCLI(t, addr, "template", "apply", path)
	require.Equal(t, 1, res.code)
	require.Empty(t, res.stdout)
	require.Equal(t, `tasker: `+path+`: step "charge": depends_on: unknown step "x" (InvalidArgument)`+"\n", res.stderr)
}

func TestTemplateGetRoundTrips(t *testing.T) {
	t.Parallel()
	stored := wantApplied(t)
	f := &fakeCoordinator{getTemplate: func(*coordinatorv1.GetTemplateRequest) (*coordinatorv1.GetTemplateResponse, error) {
		return &coordinatorv1.GetTemplateResponse{Template: stored}, nil
	}}
	addr := serve(t, f)

	res := runCLI(t, addr, "template", "get", "demo/order_fulfillment@1.0.0", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	// The JSON is a template file: parsing and converting it again gives
	// back what the coordinator sent.
	parsed, err := template.Parse([]byte(res.stdout))
	require.NoError(t, err)
	back, err := templatepb.ToProto(parsed)
	require.NoError(t, err)
	requireProtoEqual(t, wantApplied(t), back)

	res = runCLI(t, addr, "template", "get", "demo/order_fulfillment")
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	require.Len(t, lines, 5, res.stdout)
	require.Equal(t, "template demo/order_fulfillment@1.0.0  Validate, charge and reserve in parallel, then ship.", lines[0])
	require.Equal(t, []string{"charge", "flaky", "validate", "5", "attempts", "10ms×2.5≤1s", "30s", `{"card":{"brand":"visa"},"fail_times":1}`}, strings.Fields(lines[3]))
	require.Equal(t, []string{"reserve", "sleep", "validate", "never", "250ms×-≤-", "-", "-"}, strings.Fields(lines[4]))

	reqs := f.requests()
	require.Len(t, reqs, 2)
	requireProtoEqual(t, &coordinatorv1.GetTemplateRequest{Namespace: "demo", Name: "order_fulfillment", Version: "1.0.0"}, reqs[0])
	requireProtoEqual(t, &coordinatorv1.GetTemplateRequest{Namespace: "demo", Name: "order_fulfillment"}, reqs[1])

	res = runCLI(t, addr, "template", "get", "order_fulfillment")
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: template \"order_fulfillment\": want NAMESPACE/NAME[@VERSION]\n", res.stderr)
}

func TestTemplateList(t *testing.T) {
	t.Parallel()
	stored := wantApplied(t)
	f := &fakeCoordinator{listTemplates: func(*coordinatorv1.ListTemplatesRequest) (*coordinatorv1.ListTemplatesResponse, error) {
		return &coordinatorv1.ListTemplatesResponse{Templates: []*coordinatorv1.TaskTemplate{
			stored,
			{Namespace: "tasker", Name: "linear_workflow", Version: "1.0.0", Steps: []*coordinatorv1.StepTemplate{{Name: "a", Handler: "echo"}}},
		}}, nil
	}}
	addr := serve(t, f)
	res := runCLI(t, addr, "template", "list", "--namespace", "demo")
	require.Equal(t, 0, res.code, res.stderr)
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	require.Len(t, lines, 3)
	require.Equal(t, []string{"TEMPLATE", "STEPS", "DESCRIPTION"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"demo/order_fulfillment@1.0.0", "3"}, strings.Fields(lines[1])[:2])
	require.Equal(t, []string{"tasker/linear_workflow@1.0.0", "1"}, strings.Fields(lines[2]))
	requireProtoEqual(t, &coordinatorv1.ListTemplatesRequest{Namespace: "demo"}, f.requests()[0])

	res = runCLI(t, addr, "template", "list", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Len(t, strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n"), 2)
}

// template apply a.yaml b.yaml c.yaml with b refused used to register a,
// skip c and print b's error without naming b. Now the coordinator checks
// every file (validate_only) before any is registered.
func TestTemplateApplyChecksEveryFileFirst(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{registerTemplate: func(r *coordinatorv1.RegisterTemplateRequest) (*coordinatorv1.RegisterTemplateResponse, error) {
		if r.GetTemplate().GetName() != "a" {
			return nil, status.Errorf(codes.InvalidArgument, `step "s": depends_on: unknown step "x"`)
		}
		return &coordinatorv1.RegisterTemplateResponse{Template: r.GetTemplate(), Created: true}, nil
	}}
	addr := serve(t, f)
	doc := func(name string) string {
		return "namespace: demo\nname: " + name + "\nversion: 1.0.0\nsteps:\n  - {name: s, handler: noop}\n"
	}
	a, b, c := writeFile(t, "a.yaml", doc("a")), writeFile(t, "b.yaml", doc("b")), writeFile(t, "c.yaml", doc("c"))

	res := runCLI(t, addr, "template", "apply", a, b, c)
	require.Equal(t, 1, res.code)
	require.Empty(t, res.stdout, "nothing was registered")
	require.Equal(t, "tasker: "+b+`: step "s": depends_on: unknown step "x" (InvalidArgument)`+"\n"+
		"tasker: "+c+`: step "s": depends_on: unknown step "x" (InvalidArgument)`+"\n", res.stderr)
	reqs := f.requests()
	require.Len(t, reqs, 3, "one check per file")
	for _, r := range reqs {
		require.True(t, r.(*coordinatorv1.RegisterTemplateRequest).GetValidateOnly())
	}

	// Files that cannot be read or parsed are all named, and the
	// coordinator is not called.
	bad := writeFile(t, "bad.yaml", "namespace: demo\nname: x\nversion: 1.0.0\nstpes: []\n")
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	res = runCLI(t, addr, "template", "apply", a, bad, missing)
	require.Equal(t, 1, res.code)
	lines := strings.Split(strings.TrimSuffix(res.stderr, "\n"), "\n")
	require.Len(t, lines, 2, res.stderr)
	require.True(t, strings.HasPrefix(lines[0], "tasker: "+bad+":"), lines[0])
	require.Contains(t, lines[1], missing)
	require.Len(t, f.requests(), 3)
}

// Against a real coordinator: a cycle in one file, and different content
// under a registered version in another, stop every file; with none, all
// register and a handler no executor hosts is warned about.
func TestTemplateApplyAgainstCoordinator(t *testing.T) {
	t.Parallel()
	rc := startQuietCoordinator(t)

	a := writeFile(t, "a.yaml", "namespace: demo\nname: a\nversion: 1.0.0\nsteps:\n  - {name: s, handler: charge_card}\n  - {name: t, handler: charge_card, depends_on: [s]}\n")
	cycle := writeFile(t, "cycle.yaml", "namespace: demo\nname: b\nversion: 1.0.0\nsteps:\n  - {name: s, handler: noop, depends_on: [t]}\n  - {name: t, handler: noop, depends_on: [s]}\n")
	res := runCLI(t, rc.addr, "template", "apply", a, cycle)
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: "+cycle+`: step "s": depends_on: cycle: s -> t -> s (InvalidArgument)`+"\n", res.stderr)
	require.Empty(t, res.stdout)
	res = runCLI(t, rc.addr, "template", "list")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "TEMPLATE  STEPS  DESCRIPTION\n", res.stdout, "a was not registered")

	res = runCLI(t, rc.addr, "template", "apply", a)
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "registered demo/a@1.0.0\n", res.stdout)
	require.Equal(t, `warning: no connected executor hosts handler "charge_card" (steps "s", "t"): tasks wait at it until an executor hosting it connects`+"\n", res.stderr)

	changed := writeFile(t, "a2.yaml", "namespace: demo\nname: a\nversion: 1.0.0\nsteps:\n  - {name: s, handler: noop}\n")
	c := writeFile(t, "c.yaml", "namespace: demo\nname: c\nversion: 1.0.0\nsteps:\n  - {name: s, handler: noop}\n")
	res = runCLI(t, rc.addr, "template", "apply", c, changed)
	require.Equal(t, 1, res.code)
	require.Regexp(t, "^tasker: "+regexp.QuoteMeta(changed)+": demo/a@1.0.0: template demo/a@1.0.0 has digest [0-9a-f]{64}, not [0-9a-f]{64}: "+
		`template version already registered with different content; register it under a new version \(AlreadyExists\)\n$`, res.stderr)
	res = runCLI(t, rc.addr, "template", "get", "demo/c")
	require.Equal(t, 1, res.code, "c was not registered: %s", res.stdout)
}

// YAML errors used to speak encoding/json ("json: cannot unmarshal string
// into Go struct field Step.steps.retry_limit of type int") with no line.
func TestTemplateApplyParseErrorsGiveFileLineAndField(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{}
	addr := serve(t, f)
	path := writeFile(t, "a.yaml", `namespace: demo
name: order_fulfillment
version: 1.0.0
steps:
  - name: validate
    handler: echo
  - name: charge
    handler: flaky
    depends_on: [validate]
  - name: reserve
    handler: sleep
    retry_limit: three
`)
	res := runCLI(t, addr, "template", "apply", path)
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: "+path+":12: steps[2].retry_limit: want a whole number, got a string\n", res.stderr)

	env := cliEnvFor(nil)
	env.Stdin = strings.NewReader("namespace: demo\nname: x\nversion: 1.0.0\nsteps:\n  - {name: a, handler: on}\n")
	res = runCLIEnv(t, env, "--coordinator", addr, "template", "apply", "-")
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: -:5: steps[0].handler: got a bool where a string belongs (YAML reads on/off/yes/no/y/n as booleans): quote it\n", res.stderr)
	require.Empty(t, f.requests())
}

// A file may hold several templates, one per YAML document, as a
// Kubernetes manifest does; each registers, and a problem in any names its
// file and line, or which template it is, before anything registers. Before,
// everything after the first document was dropped without a word.
func TestTemplateApplySeveralPerFile(t *testing.T) {
	t.Parallel()
	rc := startQuietCoordinator(t)
	doc := func(name, handler string) string {
		return "namespace: demo\nname: " + name + "\nversion: 1.0.0\nsteps:\n  - {name: s, handler: " + handler + "}\n"
	}

	// A bad second document: its file's line, nothing registered.
	bad := writeFile(t, "bad.yaml", doc("a", "noop")+"---\nnamespace: demo\nname: b\nversion: 1.0.0\nstpes: []\n")
	res := runCLI(t, rc.addr, "template", "apply", bad)
	require.Equal(t, 1, res.code)
	require.Equal(t, "tasker: "+bad+`:10: stpes: unknown field; did you mean "steps"?`+"\n", res.stderr)
	// The coordinator refuses the second: which template it is, and
	// nothing registered.
	cycle := writeFile(t, "cycle.yaml", doc("a", "noop")+"---\nnamespace: demo\nname: b\nversion: 1.0.0\nsteps:\n  - {name: s, handler: noop, depends_on: [s]}\n")
	res = runCLI(t, rc.addr, "template", "apply", cycle)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "tasker: "+cycle+" (template 2 of 2): ")
	// One template twice, across files.
	twice := writeFile(t, "twice.yaml", doc("c", "noop"))
	res = runCLI(t, rc.addr, "template", "apply", twice, writeFile(t, "again.yaml", doc("d", "noop")+"---\n"+doc("c", "echo")))
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "(template 2 of 2): demo/c@1.0.0 is given twice, first in "+twice)
	res = runCLI(t, rc.addr, "template", "list")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "TEMPLATE  STEPS  DESCRIPTION\n", res.stdout, "nothing was registered")

	good := writeFile(t, "good.yaml", "# two templates\n---\n"+doc("a", "noop")+"---\n"+doc("b", "echo")+"---\n")
	res = runCLI(t, rc.addr, "template", "apply", good)
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, "registered demo/a@1.0.0\nregistered demo/b@1.0.0\n", res.stdout)
}

// startQuietCoordinator serves a coordinator on a new SQLite file, with
// its logs discarded, until the test ends.
func startQuietCoordinator(t *testing.T) *runningCoordinator {
	t.Helper()
	rc, err := startCoordinator(t.Context(), coordinatorOptions{
		listen: "127.0.0.1:0",
		store:  storeFlags{db: filepath.Join(t.TempDir(), "tasker.db"), sync: "normal"},
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rc.stop()) })
	return rc
}
