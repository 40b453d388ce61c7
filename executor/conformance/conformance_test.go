package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"

	"github.com/tasker-go/tasker/executor"
)

func TestEchoReturnsTheRequestAndTheHandlersTraceContext(t *testing.T) {
	t.Parallel()
	sent := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	ctx := propagation.TraceContext{}.Extract(context.Background(), sent)
	out, err := Echo(ctx, &executor.Request{
		TaskID: "t", StepID: "s", StepName: "n", Handler: NameEcho, Attempt: 2, IdempotencyKey: "t/s/0",
		Namespace: "ns", TemplateName: "tpl", TemplateVersion: "1.0.0",
		Config: json.RawMessage(`{"pad": 3}`), ParentResults: map[string]json.RawMessage{"p": json.RawMessage(`[1]`), "q": nil},
	})
	require.NoError(t, err)
	b, err := json.Marshal(out)
	require.NoError(t, err)
	require.JSONEq(t, `{"task_id":"t","step_id":"s","step_name":"n","handler":"conformance.echo","attempt":2,
		"idempotency_key":"t/s/0","namespace":"ns","template_name":"tpl","template_version":"1.0.0",
		"context":null,"config":{"pad":3},"parent_results":{"p":[1],"q":null},
		"trace_context":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},"pad":"xxx"}`, string(b))
}

func TestSleepStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("cancelled by test"))
	_, err := Sleep(ctx, &executor.Request{Config: json.RawMessage(`{"ms": 600000}`)})
	require.ErrorContains(t, err, "cancelled by test")

	start := time.Now()
	out, err := Sleep(context.Background(), &executor.Request{Context: json.RawMessage(`{"ms": 5}`)})
	require.NoError(t, err)
	res := out.(sleepResult)
	require.Equal(t, 5.0, res.SleptMS)
	require.GreaterOrEqual(t, res.EndedUnixNano-res.StartedUnixNano, int64(5*time.Millisecond))
	require.GreaterOrEqual(t, res.StartedUnixNano, start.UnixNano())
}

func TestFailCarriesExactlyItsParams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		params string
		check  func(t *testing.T, err error)
	}{
		{`{"message":"declined","class":"CardDeclined","permanent":true,"backoff_ms":250}`, func(t *testing.T, err error) {
			require.EqualError(t, err, "declined")
		}},
		{`{}`, func(t *testing.T, err error) { require.EqualError(t, err, DefaultFailMessage) }},
		{`{"ms":"soon","permanent":"yes"}`, func(t *testing.T, err error) { require.ErrorContains(t, err, "permanent: want true or false") }},
	} {
		_, err := Fail(context.Background(), &executor.Request{Config: json.RawMessage(tc.params)})
		require.Error(t, err)
		tc.check(t, err)
	}
	_, err := Sleep(context.Background(), &executor.Request{Config: json.RawMessage(`[1]`)})
	require.ErrorContains(t, err, "handler_config: want a JSON object")
}
