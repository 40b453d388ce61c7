package coordinator

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tasker-go/tasker/admission"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/state"
)

// The waiting reasons, as the API and the metrics name them.
const (
	waitParents    = "parents"
	waitBackoff    = "backoff"
	waitScheduled  = "scheduled"
	waitSignal     = "signal" // a durable wait for a signal (waits.go)
	waitSleep      = "sleep"
	waitNoExecutor = "no_executor"
	waitCapacity   = "capacity"
	// Flow control: admission.ReasonConcurrency, ReasonRateLimit and
	// ReasonPriority, naming the key or limit.
)

// waitReason is why one step waits.
type waitReason struct {
	reason  string
	on      []string  // parents
	until   time.Time // backoff
	handler string    // no_executor, capacity
	key     string    // concurrency, rate_limit, priority
}

// waitingOf says why each step of a run waits, by step id; steps that run,
// finished or failed for good are absent, as are all steps of a task that
// is not running. The stages come from plan.Wait, which reads the view
// readiness decides with; a step that may run now waits for a slot, and
// whether any connected executor hosts its handler says which kind. The
// caller holds tr.mu, or tr is its own.
func (e *engine) waitingOf(tr *taskRun, now time.Time) map[string]*waitReason {
	if tr.task.State != state.Pending && tr.task.State != state.InProgress {
		return nil
	}
	out := map[string]*waitReason{}
	for i, s := range tr.steps {
		if w := waitReasonOf(tr, i); w != nil {
			out[s.ID] = w
			continue
		}
		stage, parents, until := plan.Wait(tr.view, i, now)
		var w *waitReason
		switch stage {
		case plan.StageNone:
			continue
		case plan.StageParents:
			w = &waitReason{reason: waitParents, on: make([]string, len(parents))}
			for k, p := range parents {
				w.on[k] = tr.steps[p].Name
			}
		case plan.StageBackoff:
			w = &waitReason{reason: waitBackoff, until: until}
		case plan.StageSlot:
			switch {
			case tr.waitsToStart(now):
				w = &waitReason{reason: waitScheduled, until: tr.task.RunAt}
			case tr.task.State == state.Pending && tr.blocked != nil:
				w = blockedReason(tr.blocked)
			case s.blocked != nil && !s.waiting:
				w = blockedReason(s.blocked)
			case !e.pool.hosted(s.Handler):
				w = &waitReason{reason: waitNoExecutor, handler: s.Handler}
			default:
				w = &waitReason{reason: waitCapacity, handler: s.Handler}
			}
		}
		out[s.ID] = w
	}
	return out
}

// blockedReason is the waiting reason of a refused admission: the key
// (or limit) it waits on, and for tokens, when they will be there.
func blockedReason(v *admission.Verdict) *waitReason {
	w := &waitReason{reason: v.Reason, key: v.Key}
	if v.Reason == admission.ReasonRateLimit {
		w.until = v.RetryAt
	}
	return w
}

// waitingToProto sets each step's waiting reason.
func waitingToProto(p *coordinatorv1.Task, waiting map[string]*waitReason) {
	for _, st := range p.GetSteps() {
		w := waiting[st.GetId()]
		if w == nil {
			continue
		}
		st.Waiting = &coordinatorv1.Waiting{Reason: w.reason, On: w.on, Handler: w.handler, Key: w.key}
		if !w.until.IsZero() {
			st.Waiting.Until = timestamppb.New(w.until)
		}
	}
}
