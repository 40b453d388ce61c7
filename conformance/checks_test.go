package conformance

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

func TestMaxConcurrent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ivs  []interval
		want int
	}{
		{"none", nil, 0},
		{"one", []interval{{0, 10}}, 1},
		{"back to back do not overlap", []interval{{0, 10}, {10, 20}, {20, 30}}, 1},
		{"nested", []interval{{0, 100}, {10, 20}, {15, 30}}, 3},
		{"two waves", []interval{{0, 10}, {1, 11}, {12, 20}, {13, 21}, {14, 22}}, 3},
	} {
		require.Equal(t, tc.want, maxConcurrent(tc.ivs), tc.name)
	}
}

func TestTraceID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736", true},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false},
		{"", "", false},
	} {
		got, ok := traceID(tc.in)
		require.Equal(t, tc.ok, ok, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	sent := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	require.Empty(t, checkTrace(sent, map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"}), "a child span keeps the trace")
	require.Contains(t, checkTrace(sent, map[string]string{"traceparent": "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})[0], "would not join")
	require.Contains(t, checkTrace(sent, map[string]string{})[0], "saw no traceparent")
}

func TestCheckFailure(t *testing.T) {
	t.Parallel()
	failure := func(f *executorv1.StepFailure) *executorv1.StepResult {
		return &executorv1.StepResult{Outcome: &executorv1.StepResult_Failure{Failure: f}}
	}
	want := wantFailure{class: "RateLimited", message: "slow", permanent: ptr(false), backoff: ptr(1500 * time.Millisecond)}
	require.Empty(t, checkFailure(failure(&executorv1.StepFailure{Message: "slow", ErrorClass: "RateLimited", Backoff: durationpb.New(1500 * time.Millisecond)}), want))
	require.Empty(t, checkFailure(failure(&executorv1.StepFailure{Message: "x", ErrorClass: "cancelled"}), wantFailure{class: classCancelled}), "classes compare without case")
	got := checkFailure(failure(&executorv1.StepFailure{ErrorClass: "Other", Permanent: true}), want)
	require.Equal(t, []string{
		`error_class is "Other", want "RateLimited"`,
		`message is "", want "slow"`,
		"permanent is true, want false",
		"backoff is unset, want 1.5s",
		"message is empty; it is shown to people",
	}, got)
	success := &executorv1.StepResult{Outcome: &executorv1.StepResult_Success{Success: &executorv1.StepSuccess{Results: []byte(`{}`)}}}
	require.Equal(t, []string{"want a failure (RateLimited), got success {}"}, checkFailure(success, want))
	require.Equal(t, []string{"backoff is 2s, want none"}, checkFailure(failure(&executorv1.StepFailure{Message: "m", Backoff: durationpb.New(2 * time.Second)}), wantFailure{noBackoff: true}))
}

func TestCheckDescribe(t *testing.T) {
	t.Parallel()
	ok := &executorv1.DescribeResponse{ExecutorId: "x", Capacity: 1, Language: "rust", ProtocolVersion: 1, Handlers: []string{HandlerEcho, "charge"}}
	require.Empty(t, checkDescribe(ok, []string{HandlerEcho}))
	bad := &executorv1.DescribeResponse{ProtocolVersion: 2, Handlers: []string{"a", "a", ""}}
	require.Equal(t, []string{
		"executor_id is empty; it must be stable and non-empty (results carry it)",
		"capacity is 0; it must be at least 1",
		`language is empty; say e.g. "go", "node", "python"`,
		"protocol_version is 2; this kit checks version 1",
		"handlers does not list conformance.echo (start the executor with its conformance handlers registered, e.g. --conformance)",
		`handlers lists "a" twice`,
		"handlers lists an empty name",
	}, checkDescribe(bad, []string{HandlerEcho}))
}

func TestCheckEcho(t *testing.T) {
	t.Parallel()
	step := &executorv1.ExecuteStep{
		TaskId: "t", StepId: "s", StepName: "n", Handler: HandlerEcho, Attempt: 3, IdempotencyKey: "t/s/0",
		Namespace: "ns", TemplateName: "tpl", TemplateVersion: "1.0.0",
		Context: []byte(`{"a": 1, "b": [true, null]}`), HandlerConfig: []byte(`{}`),
		ParentResults: map[string][]byte{"p": []byte(`null`)},
	}
	good := `{"task_id":"t","step_id":"s","step_name":"n","handler":"conformance.echo","attempt":3,"idempotency_key":"t/s/0",
		"namespace":"ns","template_name":"tpl","template_version":"1.0.0","context":{"b":[true,null],"a":1},"config":{},
		"parent_results":{"p":null},"trace_context":{}}`
	body, err := parseEcho([]byte(good))
	require.NoError(t, err)
	require.Empty(t, checkEcho(step, body))

	bad := strings.NewReplacer(`"attempt":3`, `"attempt":1`, `"a":1`, `"a":"1"`, `"parent_results":{"p":null}`, `"parent_results":{}`, `"namespace":"ns",`, ``).Replace(good)
	body, err = parseEcho([]byte(bad))
	require.NoError(t, err)
	got := checkEcho(step, body)
	require.Len(t, got, 4, got)
	require.Contains(t, got[0], `echo lacks namespace`)
	require.Contains(t, got[1], "echo attempt is 1, want 3")
	require.Contains(t, got[2], "echo context is")
	require.Contains(t, got[3], "echo parent_results names [], want [p]")
}

func TestMaxGapAndCounts(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(100, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	require.Equal(t, 5*time.Second, maxGap([]time.Time{at(0), at(5), at(7)}, at(8)))
	require.Equal(t, 6*time.Second, maxGap([]time.Time{at(0), at(1)}, at(7)))
	require.Zero(t, maxGap(nil, at(7)))
	step := &executorv1.ExecuteStep{Handler: HandlerSleep, Attempt: 1}
	require.Empty(t, countProblem(step, 1))
	require.Contains(t, countProblem(step, 0), "got no result")
	require.Contains(t, countProblem(step, 2), "got 2 results")
}
