package coordinator_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
	"github.com/tasker-go/tasker/template"
)

// The fuzz targets below build one harness per fuzzing process (in the
// *testing.F) and reuse it for every input, so an iteration costs a few RPCs
// rather than a new database and server. Inside the fuzz function only the
// iteration's t is used: calling the F (or a harness helper that holds it)
// there is not allowed.

// fuzzOrderV1 has only skippable steps, so bypassing all of them completes
// the task at creation.
const fuzzOrderV1 = `
namespace: fuzz
name: order
version: 1.0.0
steps:
  - name: prepare
    handler: fuzz_unhosted
    skippable: true
  - name: notify
    handler: fuzz_unhosted
    depends_on: [prepare]
    skippable: true
`

// fuzzOrderV2 is the highest version, so a request without a version gets
// it. Its handlers are hosted by no executor: created tasks wait in pending
// and nothing changes them between iterations.
const fuzzOrderV2 = `
namespace: fuzz
name: order
version: 1.2.0
context_schema:
  type: object
  required: [order_id]
  properties:
    order_id: {type: string, minLength: 1, maxLength: 64}
    qty: {type: integer, minimum: 1, maximum: 1000}
    email: {type: string, format: email}
    tags: {type: array, items: {type: string}, uniqueItems: true}
    note: {type: [string, "null"]}
steps:
  - name: validate
    handler: fuzz_unhosted
  - name: enrich
    handler: fuzz_unhosted
    depends_on: [validate]
    skippable: true
    retryable: false
  - name: ship
    handler: fuzz_unhosted
    depends_on: [enrich]
    retry_limit: 5
`

// fuzzMaxContextDepth bounds the nesting of fuzzed contexts. Far deeper
// JSON (thousands of levels) trips protobuf's recursion limit while gRPC
// decodes the request, before the coordinator sees it.
const fuzzMaxContextDepth = 100

// createFuzz is what FuzzCreateTask keeps between iterations of one
// process. Iterations run one at a time, so it needs no lock.
type createFuzz struct {
	h         *harness
	templates map[string]*template.Template // by version, normalized
	schema    *template.ContextSchema       // of fuzzOrderV2
	// seen holds every task id this process created; a repeat must return
	// one of them.
	seen map[string]bool
	// newest is the id ListTasks lists first; since ids are UUIDv7, any task
	// stored by a request shows up there.
	newest string
	// count is how many tasks exist, checked exactly while listing them all
	// is cheap.
	count int
}

// fuzzExactCountBelow is the task count under which every iteration lists
// all tasks to check the count; above it only the newest is compared.
const fuzzExactCountBelow = 200

// FuzzCreateTask sends CreateTask requests with fuzzed coordinates,
// context, idempotency key and bypass list to a real coordinator, and checks
// that the outcome is the one the request deserves: a refusal with the
// right code that stores nothing, or a task whose context, steps and states
// follow from the request and the template; and that a repeat returns the
// same task with created=false.
func FuzzCreateTask(f *testing.F) {
	h := newHarness(f)
	s := &createFuzz{h: h, templates: map[string]*template.Template{}, seen: map[string]bool{}}
	for _, y := range []string{fuzzOrderV1, fuzzOrderV2} {
		h.apply(y)
		tpl, err := template.Parse([]byte(y))
		require.NoError(f, err)
		tpl.Normalize()
		s.templates[tpl.Version] = tpl
	}
	schema, err := template.CompileContextSchema(s.templates["1.2.0"].ContextSchema)
	require.NoError(f, err)
	s.schema = schema

	// coords picks how the template is named, so that most inputs reach the
	// checks behind the template lookup: bit 0 set sends namespace and name
	// as fuzzed (else fuzz/order), bit 1 set sends version as fuzzed (else
	// "", 1.0.0 or 1.2.0 by coords>>2).
	f.Fuzz(func(t *testing.T, coords uint8, namespace, name, version string, contextJSON []byte, key, bypass string) {
		sent, ok := fuzzContext(contextJSON)
		if !ok {
			t.Skip("context nests too deeply for gRPC to carry")
		}
		if coords&1 == 0 {
			namespace, name = "fuzz", "order"
		}
		if coords&2 == 0 {
			version = []string{"", "1.0.0", "1.2.0"}[int(coords>>2)%3]
		}
		req := &coordinatorv1.CreateTaskRequest{
			Namespace: validUTF8(namespace), Name: validUTF8(name), Version: validUTF8(version),
			Context: sent, IdempotencyKey: validUTF8(key),
		}
		if bypass != "" {
			req.BypassSteps = strings.Split(validUTF8(bypass), ",")
		}
		s.check(t, req)
	})
}

// fuzzContext turns fuzzed bytes into the Struct a client would send: a
// JSON object as itself, anything else as the order_id string (so mutations
// that break the JSON still explore the schema's string rules). Empty input
// sends no context at all. It reports false for contexts too deep to send.
func fuzzContext(raw []byte) (*structpb.Struct, bool) {
	if len(raw) == 0 {
		return nil, true
	}
	var v any
	obj, ok := map[string]any(nil), false
	if json.Unmarshal(raw, &v) == nil {
		obj, ok = v.(map[string]any)
	}
	if !ok {
		obj = map[string]any{"order_id": validUTF8(string(raw))}
	}
	if jsonDepth(obj) > fuzzMaxContextDepth {
		return nil, false
	}
	sent, err := structpb.NewStruct(obj)
	if err != nil {
		panic(err) // decoded JSON and valid UTF-8 always convert
	}
	return sent, true
}

func jsonDepth(v any) int {
	deepest := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			deepest = max(deepest, jsonDepth(e))
		}
	case []any:
		for _, e := range v {
			deepest = max(deepest, jsonDepth(e))
		}
	default:
		return 0
	}
	return deepest + 1
}

// validUTF8 keeps fuzzed strings sendable: proto3 strings must be UTF-8,
// and the client refuses to marshal anything else.
func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// refusals lists the codes a request deserves, one per rule it breaks,
// judged independently of the order the coordinator checks them in. An
// empty list means it must succeed. It also returns the template version
// the request resolves to ("" if none).
func (s *createFuzz) refusals(req *coordinatorv1.CreateTaskRequest) ([]codes.Code, string) {
	var want []codes.Code
	if req.GetNamespace() == "" || req.GetName() == "" {
		want = append(want, codes.InvalidArgument)
	}
	wire := []byte("{}")
	if req.GetContext() != nil {
		var err error
		wire, err = json.Marshal(req.GetContext().AsMap())
		if err != nil {
			panic(err) // a Struct decoded from JSON always encodes
		}
	}
	if len(wire) > 1<<20 {
		want = append(want, codes.ResourceExhausted)
	}
	version := req.GetVersion()
	if version == "" {
		version = "1.2.0"
	}
	tpl := s.templates[version]
	if req.GetNamespace() != "fuzz" || req.GetName() != "order" || tpl == nil {
		return append(want, codes.NotFound), ""
	}
	if version == "1.2.0" && s.schema.Validate(wire) != nil {
		want = append(want, codes.InvalidArgument)
	}
	for _, b := range req.GetBypassSteps() {
		i := slices.IndexFunc(tpl.Steps, func(st template.Step) bool { return st.Name == b })
		if i < 0 || !tpl.Steps[i].Skippable {
			want = append(want, codes.InvalidArgument)
		}
	}
	return want, version
}

func (s *createFuzz) check(t *testing.T, req *coordinatorv1.CreateTaskRequest) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	refusals, version := s.refusals(req)
	resp, err := s.h.client.CreateTask(ctx, req)
	if err != nil {
		require.Contains(t, refusals, status.Code(err), "CreateTask(%v) failed with an unexpected code: %v", req, err)
		s.requireStored(ctx, t, "a refused request stored a task")
		return
	}
	require.Empty(t, refusals, "CreateTask(%v) succeeded; want one of %v", req, refusals)
	task := resp.GetTask()
	wantCtx := req.GetContext()
	if wantCtx == nil {
		wantCtx = &structpb.Struct{}
	}
	if resp.GetCreated() {
		// Book-keeping first, so one failed check does not make every
		// later seed fail too.
		known := s.seen[task.GetId()]
		s.seen[task.GetId()] = true
		s.count++
		s.newest = task.GetId()
		require.False(t, known, "created=true for the existing task %s", task.GetId())
		require.Equal(t, req.GetNamespace(), task.GetNamespace())
		require.Equal(t, req.GetName(), task.GetName())
		require.Equal(t, version, task.GetVersion(), "an empty version resolves to the highest")
		requireProtoEqual(t, wantCtx, task.GetContext(), "the stored context must be the one sent")
		if req.GetIdempotencyKey() != "" {
			require.Equal(t, req.GetIdempotencyKey(), task.GetIdempotencyKey())
		} else {
			require.NotEmpty(t, task.GetIdempotencyKey(), "without a key the identity is a hash")
		}
		s.requireStored(ctx, t, "the new task must be listed first")
		s.requireFreshSteps(t, task, req.GetBypassSteps())
	} else {
		require.True(t, s.seen[task.GetId()], "created=false must return an existing task, got %s", task.GetId())
		if req.GetIdempotencyKey() != "" {
			require.Equal(t, req.GetIdempotencyKey(), task.GetIdempotencyKey(), "the key identifies the task")
		} else {
			require.Equal(t, version, task.GetVersion(), "the identity hash covers the version")
			requireProtoEqual(t, wantCtx, task.GetContext(), "the identity hash covers the context")
		}
		s.requireStored(ctx, t, "a repeated request stored a second task")
	}
	s.requireTemplateSteps(t, task)

	again, err := s.h.client.CreateTask(ctx, req)
	require.NoError(t, err, "repeating a request that succeeded")
	require.False(t, again.GetCreated(), "a repeat must not create a task")
	require.Equal(t, task.GetId(), again.GetTask().GetId(), "a repeat must return the same task")
	s.requireStored(ctx, t, "a repeat stored a second task")
}

// requireStored checks that the task listed first is s.newest and, while
// that is cheap, that exactly s.count tasks exist.
func (s *createFuzz) requireStored(ctx context.Context, t *testing.T, msg string) {
	t.Helper()
	first, err := s.h.client.ListTasks(ctx, &coordinatorv1.ListTasksRequest{PageSize: 1})
	require.NoError(t, err)
	got := ""
	if len(first.GetTasks()) > 0 {
		got = first.GetTasks()[0].GetId()
	}
	require.Equal(t, s.newest, got, msg)
	if s.count >= fuzzExactCountBelow {
		return
	}
	all, err := s.h.client.ListTasks(ctx, &coordinatorv1.ListTasksRequest{PageSize: int32(s.count + 1)})
	require.NoError(t, err)
	require.Len(t, all.GetTasks(), s.count, msg)
	require.Empty(t, all.GetNextPageToken(), msg)
}

// requireTemplateSteps checks that task has the steps of the template
// version it is pinned to, in template order.
func (s *createFuzz) requireTemplateSteps(t *testing.T, task *coordinatorv1.Task) {
	t.Helper()
	tpl := s.templates[task.GetVersion()]
	require.NotNil(t, tpl, "task pinned to unknown version %q", task.GetVersion())
	require.Len(t, task.GetSteps(), len(tpl.Steps))
	for i, ts := range tpl.Steps {
		got := task.GetSteps()[i]
		require.Equal(t, ts.Name, got.GetName())
		require.Equal(t, ts.Handler, got.GetHandler())
		require.Equal(t, len(ts.DependsOn), len(got.GetDependsOn()), "step %s depends_on", ts.Name)
		for j, d := range ts.DependsOn {
			require.Equal(t, d, got.GetDependsOn()[j], "step %s depends_on", ts.Name)
		}
		require.Equal(t, ts.Skippable, got.GetSkippable(), "step %s skippable", ts.Name)
		require.Equal(t, ts.IsRetryable(), got.GetRetryable(), "step %s retryable", ts.Name)
		require.EqualValues(t, ts.RetryLimit, got.GetMaxAttempts(), "step %s max_attempts", ts.Name)
		require.NotEmpty(t, got.GetId())
	}
}

// requireFreshSteps checks the states of a task just created: bypassed
// steps resolved_manually with one transition saying so, the rest pending
// and never attempted (no executor hosts their handler); the task complete
// when everything was bypassed, pending otherwise.
func (s *createFuzz) requireFreshSteps(t *testing.T, task *coordinatorv1.Task, bypass []string) {
	t.Helper()
	bypassed := 0
	for _, st := range task.GetSteps() {
		require.Zero(t, st.GetAttempts(), "step %s", st.GetName())
		if !slices.Contains(bypass, st.GetName()) {
			require.Equal(t, coordinatorv1.State_STATE_PENDING, st.GetState(), "step %s", st.GetName())
			require.Empty(t, st.GetTransitions(), "step %s", st.GetName())
			continue
		}
		bypassed++
		require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, st.GetState(), "bypassed step %s", st.GetName())
		require.Len(t, st.GetTransitions(), 1, "bypassed step %s: one transition, however often it was listed", st.GetName())
		tr := st.GetTransitions()[0]
		require.Equal(t, coordinatorv1.State_STATE_PENDING, tr.GetFromState())
		require.Equal(t, coordinatorv1.State_STATE_RESOLVED_MANUALLY, tr.GetToState())
		require.Contains(t, tr.GetReason(), "bypass")
	}
	if bypassed == len(task.GetSteps()) {
		require.Equal(t, coordinatorv1.State_STATE_COMPLETE, task.GetState(), "every step was bypassed")
		require.NotNil(t, task.GetCompletedAt())
		return
	}
	require.Equal(t, coordinatorv1.State_STATE_PENDING, task.GetState(), "steps: %v", stepSummary(task))
	require.Nil(t, task.GetCompletedAt())
}

func requireProtoEqual(t *testing.T, want, got proto.Message, msg string) {
	t.Helper()
	require.Truef(t, proto.Equal(want, got), "%s\nwant: %s\ngot:  %s", msg, prototext.Format(want), prototext.Format(got))
}

// fuzzResultTemplate gives a completed task with a step that failed once
// (so attempt 1 is stale and attempt 2 was applied) and a parent whose
// results the child read.
const fuzzResultTemplate = `
namespace: fuzz
name: results
version: 1.0.0
steps:
  - name: first
    handler: echo
    config: {payload: [1, "two", {"three": 3}]}
  - name: second
    handler: flaky
    depends_on: [first]
    config: {fail_times: 1}
    backoff: {initial: 1ms, multiplier: 1, max: 1ms}
`

// fuzzBlockedTemplate gives a task that stays active in memory with its
// step pending for good: no executor hosts the handler.
const fuzzBlockedTemplate = `
namespace: fuzz
name: blocked
version: 1.0.0
steps:
  - name: waits
    handler: fuzz_unhosted
`

// FuzzReportStepResult delivers fuzzed step results through the unary
// ReportStepResult RPC: for a completed task (no longer in memory), for a
// task whose step never started (in memory), and for ids that name nothing.
// None of them may be applied or change anything stored, and a malformed
// one is refused with InvalidArgument, never an internal error.
func FuzzReportStepResult(f *testing.F) {
	h := newHarness(f)
	executorID, _ := h.startExecutor(2, nil)
	h.apply(fuzzResultTemplate)
	h.apply(fuzzBlockedTemplate)
	done := h.waitState(h.create("fuzz", "results", map[string]any{"k": "v"}).GetId(), coordinatorv1.State_STATE_COMPLETE)
	require.EqualValues(f, 2, step(done, "second").GetAttempts())
	blocked := h.create("fuzz", "blocked", map[string]any{})
	require.Eventually(f, func() bool {
		// Settled: the root step is queued for a slot no executor offers.
		return h.get(blocked.GetId()).GetState() == coordinatorv1.State_STATE_PENDING
	}, 10*time.Second, 10*time.Millisecond)
	blocked = h.get(blocked.GetId())
	require.Equal(f, coordinatorv1.State_STATE_PENDING, step(blocked, "waits").GetState())

	f.Fuzz(func(t *testing.T, taskSel uint8, taskID string, stepSel uint8, stepID string, attempt int32,
		realExecutor bool, executorIDIn string, outcome uint8, results []byte,
		message, class string, permanent bool, backoffSeconds int64, backoffNanos int32,
	) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		r := &executorv1.StepResult{Attempt: attempt, ExecutorId: validUTF8(executorIDIn)}
		switch taskSel % 3 {
		case 0:
			r.TaskId = done.GetId()
		case 1:
			r.TaskId = blocked.GetId()
		default:
			r.TaskId = validUTF8(taskID)
		}
		switch stepSel % 5 {
		case 0:
			r.StepId = step(done, "first").GetId()
		case 1:
			r.StepId = step(done, "second").GetId()
		case 2:
			r.StepId = step(blocked, "waits").GetId()
		case 3:
			r.StepId = done.GetId() // a task id where a step id belongs
		default:
			r.StepId = validUTF8(stepID)
		}
		if realExecutor {
			r.ExecutorId = executorID
		}
		switch outcome % 3 {
		case 0:
			r.Outcome = &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{Results: results}}
		case 1:
			failure := &executorv1.StepFailure{Message: validUTF8(message), ErrorClass: validUTF8(class), Permanent: permanent}
			if backoffSeconds != 0 || backoffNanos != 0 {
				// Not necessarily a valid Duration: signs may disagree,
				// values may be out of range.
				failure.Backoff = &durationpb.Duration{Seconds: backoffSeconds, Nanos: backoffNanos}
			}
			r.Outcome = &executorv1.StepResult_Failure{Failure: failure}
		}
		malformed := r.GetTaskId() == "" || r.GetStepId() == "" || r.GetAttempt() < 1 || r.GetOutcome() == nil

		resp, err := h.client.ReportStepResult(ctx, &coordinatorv1.ReportStepResultRequest{Result: r})
		if malformed {
			require.Equal(t, codes.InvalidArgument, status.Code(err), "ReportStepResult(%v): %v", r, err)
		} else {
			require.NoError(t, err, "ReportStepResult(%v)", r)
			require.False(t, resp.GetApplied(), "ReportStepResult(%v) applied a result for a step not in flight", r)
		}

		for _, before := range []*coordinatorv1.Task{done, blocked} {
			after, err := h.client.GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: before.GetId()})
			require.NoError(t, err)
			requireProtoEqual(t, before, after.GetTask(), "a result that was not applied changed the task")
		}
		execs, err := h.client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
		require.NoError(t, err)
		for _, e := range execs.GetExecutors() {
			require.Zero(t, e.GetInFlight(), "executor %s has phantom work in flight", e.GetId())
		}
	})
}
