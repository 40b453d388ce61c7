package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/store"
)

// claimPage is how many tasks one TaskClaim takes over.
const claimPage = 500

// acquireLease starts a new lease for this coordinator.
func (e *engine) acquireLease(ctx context.Context) error {
	l, err := e.store.LeaseAcquire(ctx, &store.LeaseAcquireParams{CoordinatorID: e.id, TTL: e.leaseTTL, Now: e.now(), Address: e.address})
	if err != nil {
		return fmt.Errorf("acquire lease: %w", err)
	}
	e.lease.Store(l)
	e.log.Info("lease acquired", "token", l.Token, "expires", l.Expires)
	return nil
}

// claim takes over every unfinished task that no live coordinator owns
// (this one's previous run, or a coordinator that died or lost its lease)
// and continues it, as after a restart.
func (e *engine) claim(ctx context.Context) (int, error) {
	n := 0
	for {
		l := e.lease.Load()
		if l == nil {
			return n, errors.New("claim: no lease")
		}
		page, err := e.store.TaskClaim(ctx, &store.TaskClaimParams{Lease: l, Now: e.now(), Limit: claimPage})
		if err != nil {
			return n, fmt.Errorf("claim tasks: %w", err)
		}
		if err := e.continueTasks(ctx, page); err != nil {
			return n, err
		}
		n += len(page)
		if len(page) < claimPage {
			return n, nil
		}
	}
}

// continueTasks loads claimed tasks and carries them on: steps in flight
// wait for their results within the grace period (or are adopted when an
// executor reports them running), errored steps get their backoff timers
// back, ready steps are dispatched.
func (e *engine) continueTasks(ctx context.Context, tasks []*store.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.ID
	}
	steps, err := e.store.StepList(ctx, ids...)
	if err != nil {
		return fmt.Errorf("list steps of claimed tasks: %w", err)
	}
	byTask := map[string][]*store.Step{}
	for _, s := range steps {
		byTask[s.TaskID] = append(byTask[s.TaskID], s)
	}
	for _, t := range tasks {
		ct, err := e.templates.get(ctx, t.Namespace, t.Name, t.Version)
		if err != nil {
			e.log.Error("cannot continue task: template missing", "task_id", t.ID, "err", err)
			continue
		}
		if tr, fresh := e.register(t, ct, byTask[t.ID]); fresh {
			e.start(ctx, tr)
		}
	}
	return nil
}

// keepLease renews the lease and claims orphaned tasks every third of the
// lease's life, until the engine stops. A lease that cannot be renewed in
// time is lost: every task in memory is dropped (its writes would be
// refused anyway) and a new lease starts over.
func (e *engine) keepLease() {
	tick := time.NewTicker(e.leaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		case <-e.leaseCheck:
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.leaseTTL)
		e.renewAndClaim(ctx)
		cancel()
	}
}

func (e *engine) renewAndClaim(ctx context.Context) {
	l := e.lease.Load()
	renewed, err := e.store.LeaseRenew(ctx, &store.LeaseRenewParams{Lease: l, TTL: e.leaseTTL, Now: e.now()})
	switch {
	case err == nil:
		e.lease.Store(renewed)
	case errors.Is(err, store.ErrLeaseLost) || !e.now().Before(l.Expires):
		e.log.Warn("lease lost; dropping every task and starting over", "token", l.Token, "err", err)
		e.metrics.leaseLost.Inc()
		e.dropAll()
		if err := e.acquireLease(ctx); err != nil {
			e.log.Error("reacquire lease failed", "err", err)
			return
		}
	default:
		e.log.Warn("lease renewal failed; will retry", "token", l.Token, "expires", l.Expires, "err", err)
		return
	}
	if n, err := e.claim(ctx); err != nil {
		e.log.Warn("claiming orphaned tasks failed", "err", err)
	} else if n > 0 {
		e.log.Info("took over unfinished tasks", "tasks", n)
	}
}

// leaseLive reports whether this coordinator holds a lease that has not
// expired.
func (e *engine) leaseLive() bool {
	l := e.lease.Load()
	return l != nil && e.now().Before(l.Expires)
}

// checkLease asks keepLease to renew the lease now; a request already
// pending covers this one.
func (e *engine) checkLease() {
	select {
	case e.leaseCheck <- struct{}{}:
	default:
	}
}

// releaseLease ends the lease at once when the coordinator stops, so its
// peers take its unfinished tasks over now rather than when the lease
// would have expired, and forward nothing to a coordinator that is gone. A
// restart under the same id takes a new lease anyway.
func (e *engine) releaseLease() {
	l := e.lease.Load()
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := e.store.LeaseRenew(ctx, &store.LeaseRenewParams{Lease: l, TTL: time.Nanosecond, Now: e.now()}); err != nil {
		e.log.Warn("could not release the lease; peers take its tasks over when it expires", "token", l.Token, "expires", l.Expires, "err", err)
		return
	}
	e.log.Info("lease released", "token", l.Token)
}

// dropAll forgets every task in memory without writing anything: another
// coordinator may own them now.
func (e *engine) dropAll() {
	e.mu.Lock()
	tasks := e.tasks
	e.tasks = map[string]*taskRun{}
	e.mu.Unlock()
	for _, tr := range tasks {
		tr.mu.Lock()
		e.retire(tr)
		tr.mu.Unlock()
	}
}
