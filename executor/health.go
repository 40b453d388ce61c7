package executor

import (
	"errors"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// ErrNotReady is what Ready returns while no coordinator has an Execute
// stream open to this executor.
var ErrNotReady = errors.New("not ready: no coordinator has an Execute stream open to this executor")

// Ready reports whether this executor can receive steps now: at least one
// coordinator has an Execute stream open to it.
func (e *Executor) Ready() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.sessions) == 0 {
		return ErrNotReady
	}
	return nil
}

// setHealthLocked tells grpc.health.v1 what Ready would say: the server as
// a whole ("") and the ExecutorService alike. e.mu is held.
func (e *Executor) setHealthLocked() {
	if e.health == nil {
		return
	}
	status := healthpb.HealthCheckResponse_NOT_SERVING
	if len(e.sessions) > 0 {
		status = healthpb.HealthCheckResponse_SERVING
	}
	e.health.SetServingStatus("", status)
	e.health.SetServingStatus(executorv1.ExecutorService_ServiceDesc.ServiceName, status)
}
