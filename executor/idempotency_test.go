package executor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// The idempotency key the coordinator sends reaches the handler as is, for
// each attempt; a coordinator older than the field sends none, which the
// handler sees as "".
func TestIdempotencyKeyReachesTheHandler(t *testing.T) {
	t.Parallel()
	keys := make(chan string, 4)
	s := startExecutor(t, Config{}, map[string]HandlerFunc{
		"charge": func(_ context.Context, req *Request) (any, error) {
			keys <- req.IdempotencyKey
			return map[string]string{"charged_with": req.IdempotencyKey}, nil
		},
	})
	stream := dialExecutor(t, s.addr).open(t)

	first := newStep("charge", 1)
	first.IdempotencyKey = first.GetTaskId() + "/" + first.GetStepId() + "/0"
	stream.send(t, first)
	res := stream.result(t)
	requireEcho(t, first, s.exec, res)
	require.JSONEq(t, `{"charged_with":"`+first.GetIdempotencyKey()+`"}`, string(res.GetSuccess().GetResults()))
	require.Equal(t, first.GetIdempotencyKey(), <-keys)

	// The next attempt of the same run carries the same key; a rerun's, a
	// new one.
	for _, key := range []string{first.GetIdempotencyKey(), first.GetTaskId() + "/" + first.GetStepId() + "/1"} {
		next := newStep("charge", 2)
		next.TaskId, next.StepId, next.IdempotencyKey = first.GetTaskId(), first.GetStepId(), key
		if key != first.GetIdempotencyKey() {
			next.Attempt = 3
		}
		stream.send(t, next)
		requireEcho(t, next, s.exec, stream.result(t))
		require.Equal(t, key, <-keys)
	}

	old := newStep("charge", 1) // from a coordinator without the field
	stream.send(t, old)
	requireEcho(t, old, s.exec, stream.result(t))
	require.Empty(t, <-keys)
}
