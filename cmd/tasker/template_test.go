package main

import (
	"encoding/json"
	"os"
	"path/filepath"
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

	reqs := f.requests()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		requireProtoEqual(t, wantApplied(t), r.(*coordinatorv1.RegisterTemplateRequest).GetTemplate())
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
	require.Len(t, f.requests(), 1)
}

func TestTemplateApplyBadFileSendsNothing(t *testing.T) {
	t.Parallel()
	f := &fakeCoordinator{}
	addr := serve(t, f)
	good := writeFile(t, "good.yaml", applyYAML)
	bad := writeFile(t, "bad.yaml", "namespace: demo\nname: x\nversion: 1.0.0\nstpes: []\n")

	res := runCLI(t, addr, "template", "apply", good, bad)
	require.Equal(t, 1, res.code)
	require.True(t, strings.HasPrefix(res.stderr, "tasker: "+bad+": "), res.stderr)
	require.Contains(t, res.stderr, "stpes")
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
	res := runCLI(t, addr, "template", "apply", writeFile(t, "t.yaml", applyYAML))
	require.Equal(t, 1, res.code)
	require.Empty(t, res.stdout)
	require.Equal(t, `tasker: step "charge": depends_on: unknown step "x" (InvalidArgument)`+"\n", res.stderr)
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
