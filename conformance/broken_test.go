package conformance

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tasker-go/tasker/executor"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// rewriteResults applies f to a copy of every result on its way to the kit.
func rewriteResults(f func(*executorv1.StepResult)) func(*proxyStream, *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse {
	return func(_ *proxyStream, msg *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse {
		if msg.GetStepResult() != nil {
			msg = proto.Clone(msg).(*executorv1.ExecuteResponse)
			f(msg.GetStepResult())
		}
		return []*executorv1.ExecuteResponse{msg}
	}
}

// TestBrokenExecutorsFailTheRightCase runs the kit against a correct Go
// SDK executor behind a proxy that makes one protocol mistake, and checks
// that the case for that rule fails and says why.
func TestBrokenExecutorsFailTheRightCase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// cases to run (besides describe); the first is the one that must fail.
		cases []string
		fault fault
		// problem is part of the failing case's message.
		problem string
	}{
		{
			name:    "no attempt echo",
			cases:   []string{"echo"},
			fault:   fault{up: rewriteResults(func(r *executorv1.StepResult) { r.Attempt = 1 })},
			problem: "the attempt must be echoed",
		},
		{
			name:    "wrong executor id",
			cases:   []string{"echo"},
			fault:   fault{up: rewriteResults(func(r *executorv1.StepResult) { r.ExecutorId = "someone-else" })},
			problem: `result executor_id is "someone-else"`,
		},
		{
			name:  "over capacity",
			cases: []string{"capacity"},
			// Describe promises half of what the executor really runs.
			fault:   fault{describe: func(d *executorv1.DescribeResponse) { d.Capacity /= 2 }},
			problem: "steps ran at once, over the capacity of 2",
		},
		{
			name:  "ignores cancel",
			cases: []string{"cancel"},
			fault: fault{down: func(req *executorv1.ExecuteRequest) *executorv1.ExecuteRequest {
				if req.GetCancelStep() != nil {
					return nil
				}
				return req
			}},
			problem: "CancelStep did not stop conformance.sleep",
		},
		{
			name:  "drops results on a broken stream",
			cases: []string{"redelivery"},
			// A result for a step sent on an earlier stream is dropped.
			fault: fault{up: func(ps *proxyStream, msg *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse {
				if r := msg.GetStepResult(); r != nil && ps.startedOn(r.GetStepId()) != ps.id {
					return nil
				}
				return []*executorv1.ExecuteResponse{msg}
			}},
			problem: "a result whose stream broke must be redelivered",
		},
		{
			name:  "no heartbeats",
			cases: []string{"heartbeat-open", "heartbeat-cadence"},
			fault: fault{up: func(_ *proxyStream, msg *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse {
				if msg.GetHeartbeat() != nil {
					return nil
				}
				return []*executorv1.ExecuteResponse{msg}
			}},
			problem: "no heartbeat within",
		},
		{
			name:  "heartbeats without running attempts",
			cases: []string{"heartbeat-cadence"},
			fault: fault{up: func(_ *proxyStream, msg *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse {
				if msg.GetHeartbeat() != nil {
					msg = &executorv1.ExecuteResponse{Kind: &executorv1.ExecuteResponse_Heartbeat{Heartbeat: &executorv1.Heartbeat{}}}
				}
				return []*executorv1.ExecuteResponse{msg}
			}},
			problem: "no heartbeat listed attempt 1",
		},
		{
			name:  "heartbeats list only their own stream's attempts",
			cases: []string{"heartbeat-open"},
			fault: fault{up: func(ps *proxyStream, msg *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse {
				hb := msg.GetHeartbeat()
				if hb == nil {
					return []*executorv1.ExecuteResponse{msg}
				}
				own := &executorv1.Heartbeat{Capacity: hb.GetCapacity()}
				for _, r := range hb.GetRunning() {
					if ps.startedOn(r.GetStepId()) == ps.id {
						own.Running = append(own.Running, r)
						own.RunningStepIds = append(own.RunningStepIds, r.GetStepId())
					}
				}
				return []*executorv1.ExecuteResponse{{Kind: &executorv1.ExecuteResponse_Heartbeat{Heartbeat: own}}}
			}},
			problem: "list every attempt running in the process, whichever stream sent it",
		},
		{
			name:  "unknown handler hangs",
			cases: []string{"unknown-handler"},
			fault: fault{up: func(_ *proxyStream, msg *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse {
				if msg.GetStepResult().GetFailure().GetErrorClass() == "UnknownHandler" {
					return nil
				}
				return []*executorv1.ExecuteResponse{msg}
			}},
			problem: "no result for conformance.no-such-handler",
		},
		{
			name:  "failure loses permanence and backoff",
			cases: []string{"failure"},
			fault: fault{up: rewriteResults(func(r *executorv1.StepResult) {
				if f := r.GetFailure(); f != nil {
					f.Permanent, f.Backoff = false, nil
				}
			})},
			problem: "permanent is false, want true",
		},
		{
			name:  "trace context not handed on",
			cases: []string{"trace-context"},
			fault: fault{down: func(req *executorv1.ExecuteRequest) *executorv1.ExecuteRequest {
				if st := req.GetExecuteStep(); st != nil {
					st.TraceContext = nil
				}
				return req
			}},
			problem: "the handler saw no traceparent",
		},
		{
			name:  "two results for one attempt",
			cases: []string{"echo"},
			fault: fault{up: func(_ *proxyStream, msg *executorv1.ExecuteResponse) []*executorv1.ExecuteResponse {
				if msg.GetStepResult() != nil {
					return []*executorv1.ExecuteResponse{msg, msg}
				}
				return []*executorv1.ExecuteResponse{msg}
			}},
			problem: "got 2 results on its stream",
		},
		{
			name:    "shutdown loses the running result",
			cases:   []string{"shutdown"},
			fault:   fault{hardStop: true},
			problem: "the running step's result was lost at shutdown",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sdk := startSDK(t, executor.Config{})
			p := startProxy(t, sdk, tt.fault)
			report := runKit(t, p.addr, func(o *Options) {
				o.Cases = tt.cases
				o.Shutdown = p.shutdown(sdk)
			})
			describe, ok := report.Result("describe")
			require.True(t, ok)
			require.Equal(t, StatusPass, describe.Status, "describe: %v", describe.Problems)
			res, ok := report.Result(tt.cases[0])
			require.True(t, ok)
			require.Equal(t, StatusFail, res.Status, "case %s should fail; got %s", res.ID, res.Got)
			require.Contains(t, strings.Join(res.Problems, "\n"), tt.problem)
		})
	}
}
