package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// healthInterval is how often keepHealth asks Ready.
const healthInterval = time.Second

// ErrNotReady is wrapped by Ready's refusals.
var ErrNotReady = errors.New("not ready")

// Ready reports whether this coordinator can do its work now: it is not
// stopping, it holds a lease that has not expired, the store answers a
// read in which that lease is still live (not replaced by a restart under
// the same id, nor expired as the store's clock sees it), and the store
// has not refused every write of work for a second or more lately (see
// writeHealth). The read is of
// the leases, a table with one row per coordinator, so probes cost the
// same however many tasks are stored. The error says what is wrong, for
// the body of a readiness probe's refusal.
func (c *Coordinator) Ready(ctx context.Context) error {
	select {
	case <-c.stopping:
		return fmt.Errorf("%w: coordinator %s is stopping", ErrNotReady, c.cfg.ID)
	default:
	}
	l := c.engine.lease.Load()
	if l == nil {
		return fmt.Errorf("%w: coordinator %s holds no lease yet", ErrNotReady, c.cfg.ID)
	}
	now := c.engine.now()
	if !now.Before(l.Expires) {
		return fmt.Errorf("%w: lease %d of coordinator %s expired at %s", ErrNotReady, l.Token, c.cfg.ID, l.Expires.Format(time.RFC3339Nano))
	}
	if err := c.engine.writes.check(now); err != nil {
		return fmt.Errorf("%w: coordinator %s: %w", ErrNotReady, c.cfg.ID, err)
	}
	live, err := c.engine.store.LeaseList(ctx, now)
	if err != nil {
		return fmt.Errorf("%w: store: %w", ErrNotReady, err)
	}
	for _, x := range live {
		if x.Token == l.Token {
			return nil
		}
	}
	return fmt.Errorf("%w: lease %d of coordinator %s is no longer live in the store (lost; a new one is being taken)", ErrNotReady, l.Token, c.cfg.ID)
}

// keepHealth mirrors Ready into grpc.health.v1, for probes that speak gRPC
// (the kubelet's grpc probe, tasker-healthprobe, client-side health
// checks): the server as a whole ("") and the CoordinatorService turn
// NOT_SERVING while Ready refuses (no live lease, the store unreachable or
// refusing writes) and SERVING again once it passes. Each look is a read
// of the leases, one row per coordinator. Stop's Shutdown then holds both
// at NOT_SERVING, whatever a last look sets.
func (c *Coordinator) keepHealth() {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	serving := true // as New left it
	for {
		ctx, cancel := context.WithTimeout(c.engine.ctx, healthInterval)
		err := c.Ready(ctx)
		cancel()
		if c.engine.ctx.Err() != nil {
			return
		}
		c.engine.ready.Store(err == nil)
		status := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			status = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if now := err == nil; now != serving {
			serving = now
			if err != nil {
				c.engine.log.Warn("not ready; gRPC health turns NOT_SERVING", "err", err)
			} else {
				c.engine.log.Info("ready again; gRPC health turns SERVING")
			}
		}
		c.health.SetServingStatus("", status)
		c.health.SetServingStatus(coordinatorv1.CoordinatorService_ServiceDesc.ServiceName, status)
		select {
		case <-c.engine.ctx.Done():
			return
		case <-t.C:
		}
	}
}
