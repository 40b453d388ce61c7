package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// register dials the executor at address, asks what it hosts and opens the
// Execute stream. A repeat registration of a connected executor is a no-op.
func (p *pool) register(ctx context.Context, address string) (*coordinatorv1.ExecutorInfo, error) {
	cc, err := grpc.NewClient(address, p.dialOptions...)
	if err != nil {
		return nil, invalidf("address %q: %v", address, err)
	}
	client := executorv1.NewExecutorServiceClient(cc)
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	desc, err := client.Describe(dctx, &executorv1.DescribeRequest{CoordinatorId: p.coordinatorID})
	cancel()
	if err != nil {
		_ = cc.Close()
		return nil, status.Errorf(codes.Unavailable, "describe executor at %s: %v", address, err)
	}
	if desc.GetExecutorId() == "" || desc.GetCapacity() < 1 || len(desc.GetHandlers()) == 0 {
		_ = cc.Close()
		return nil, invalidf("executor at %s described itself without an id, handlers or a capacity of at least 1", address)
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = cc.Close()
		return nil, ErrStopped
	}
	conn := p.conns[desc.GetExecutorId()]
	if conn != nil && conn.connected && conn.address == address {
		info := p.infoLocked(conn)
		p.mu.Unlock()
		_ = cc.Close()
		return info, nil
	}
	if conn == nil {
		conn = &execConn{id: desc.GetExecutorId(), inflight: map[attemptKey]string{}}
		p.conns[conn.id] = conn
	} else {
		// The same executor came back (or moved): its attempts in flight
		// may still deliver results, so they keep their slots. They must
		// be confirmed by its first heartbeat: one that restarted (same
		// id, new process) runs none of them, and they would otherwise be
		// awaited forever.
		if conn.lostTimer != nil {
			conn.lostTimer.Stop()
			conn.lostTimer = nil
		}
		if conn.stop != nil {
			conn.stop()
		}
		if conn.cc != nil {
			_ = conn.cc.Close()
		}
		conn.unconfirmed = maps.Clone(conn.inflight)
	}
	conn.address, conn.language, conn.coordinators = address, desc.GetLanguage(), desc.GetCoordinators()
	conn.handlers = slices.Compact(slices.Sorted(slices.Values(desc.GetHandlers())))
	conn.capacity, conn.declared = int(desc.GetCapacity()), int(desc.GetCapacity())
	conn.maxReceive = defaultMaxReceive
	if n := desc.GetMaxReceiveBytes(); n > 0 {
		conn.maxReceive = int(min(n, math.MaxInt32))
	}
	if least := p.leastReceive.Load(); least == 0 || int64(conn.maxReceive) < least {
		p.leastReceive.Store(int64(conn.maxReceive))
	}
	conn.client, conn.cc = client, cc
	streamCtx, stop := context.WithCancel(context.Background())
	conn.stop = stop
	conn.generation++
	conn.out = newMailbox[*executorv1.ExecuteRequest]()
	conn.connected = true
	conn.connectedAt = time.Now()
	gen, out := conn.generation, conn.out
	info := p.infoLocked(conn)
	if !p.bg.goFn(func() { p.runStream(streamCtx, conn, gen, out) }) {
		p.mu.Unlock()
		stop()
		return nil, ErrStopped
	}
	p.grantAndHandLocked(conn)
	p.mu.Unlock()

	p.log.Info("executor registered", "executor_id", conn.id, "address", address, "handlers", info.GetHandlers(), "capacity", info.GetCapacity())
	return info, nil
}

// runStream owns one Execute stream. It reads messages and only notes that
// the executor is alive; one applier goroutine applies them in stream order
// (so a slow store never stalls the reading of heartbeats), a sender drains
// the outbox, and a watchdog ends the stream if the executor falls silent.
func (p *pool) runStream(ctx context.Context, conn *execConn, gen int, out *mailbox[*executorv1.ExecuteRequest]) {
	defer out.close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := conn.client.Execute(metadata.AppendToOutgoingContext(ctx, executor.CoordinatorIDMetadata, p.coordinatorID))
	if err != nil {
		p.broken(conn, gen, fmt.Errorf("open stream: %w", err))
		return
	}
	in := newMailbox[*executorv1.ExecuteResponse]()
	flights := newResultFlights()
	lastSeen := &conn.lastHeard
	lastSeen.Store(time.Now().UnixNano())
	done := make(chan struct{})
	started := 0
	for _, f := range []func(){
		func() { _ = p.sendLoop(ctx, out, stream) },
		func() { p.watch(ctx, cancel, lastSeen) },
		func() { p.applyLoop(ctx, conn, in, flights) },
	} {
		if p.bg.goFn(func() { defer func() { done <- struct{}{} }(); f() }) {
			started++
		}
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("executor closed the stream")
			}
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				err = cause
			}
			p.broken(conn, gen, err)
			break
		}
		lastSeen.Store(time.Now().UnixNano())
		p.messages.WithLabelValues(messageKind(msg)).Inc()
		in.push(msg)
	}
	// Messages read before the break are still applied: the applier
	// finishes what it has taken; what is queued behind it is handed over
	// here in order.
	cancel(nil)
	out.close()
	for range started {
		<-done
	}
	if rest := in.rest(); len(rest) > 0 {
		p.apply(conn, rest, flights)
	}
	flights.wait()
}

func messageKind(msg *executorv1.ExecuteResponse) string {
	switch msg.GetKind().(type) {
	case *executorv1.ExecuteResponse_StepResult:
		return "result"
	case *executorv1.ExecuteResponse_Heartbeat:
		return "heartbeat"
	case *executorv1.ExecuteResponse_Progress:
		return "progress"
	default:
		return "unknown"
	}
}

// sendLoop sends queued messages until the mailbox closes or a send fails.
func (p *pool) sendLoop(ctx context.Context, out *mailbox[*executorv1.ExecuteRequest], stream grpc.BidiStreamingClient[executorv1.ExecuteRequest, executorv1.ExecuteResponse]) error {
	for {
		batch, ok := out.take(ctx)
		if !ok {
			return nil
		}
		for _, m := range batch {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// applyLoop applies one stream's messages in the order they were read.
func (p *pool) applyLoop(ctx context.Context, conn *execConn, in *mailbox[*executorv1.ExecuteResponse], flights *resultFlights) {
	for {
		batch, ok := in.take(ctx)
		if !ok {
			return
		}
		p.apply(conn, batch, flights)
	}
}

// maxResultFlights bounds the runs of results one stream has handed to
// the engine and not yet seen applied.
const maxResultFlights = 4

// resultFlights tracks a stream's runs of results on their way through the
// engine. A run is applied on a goroutine of its own, so the stream's next
// run need not wait for the previous one's commit: under load the results
// read while a batch commits join the next batch instead of the one after
// it. Runs may then be applied out of order, which only matters for one
// step's results, and a step's next attempt (the only other result it can
// have) is dispatched after its previous result is committed.
type resultFlights struct {
	wg    sync.WaitGroup
	slots chan struct{}
}

func newResultFlights() *resultFlights {
	return &resultFlights{slots: make(chan struct{}, maxResultFlights)}
}

// wait returns once every run handed over has been applied.
func (f *resultFlights) wait() { f.wg.Wait() }

// apply handles a run of messages from conn's stream in order: results
// free their slots and are handed to the engine together (one commit per
// task, tasks in parallel), and a heartbeat that follows waits until every
// result before it is settled.
func (p *pool) apply(conn *execConn, msgs []*executorv1.ExecuteResponse, flights *resultFlights) {
	var results []*executorv1.StepResult
	flush := func() {
		if len(results) == 0 {
			return
		}
		rs := results
		results = nil
		flights.slots <- struct{}{}
		flights.wg.Add(1)
		run := func() {
			defer func() { <-flights.slots; flights.wg.Done() }()
			p.events.results(conn.id, rs)
			p.applied(len(rs))
		}
		if !p.bg.goFn(run) {
			run()
		}
	}
	for _, msg := range msgs {
		switch k := msg.GetKind().(type) {
		case *executorv1.ExecuteResponse_StepResult:
			r := k.StepResult
			p.settle(conn, attemptKey{r.GetStepId(), r.GetAttempt()})
			results = append(results, r)
		case *executorv1.ExecuteResponse_Heartbeat:
			flush()
			flights.wait()
			if share := int(k.Heartbeat.GetCapacity()); share > 0 {
				p.setShare(conn, share)
			}
			p.confirm(conn, k.Heartbeat.GetRunning())
			p.checkAdopted(conn, k.Heartbeat.GetRunning())
			if len(k.Heartbeat.GetRunning()) > 0 {
				p.events.running(conn.id, k.Heartbeat.GetRunning())
			}
		case *executorv1.ExecuteResponse_Progress:
			pr := k.Progress
			p.log.Debug("step progress", "task_id", pr.GetTaskId(), "step_id", pr.GetStepId(), "percent", pr.GetPercent(), "message", pr.GetMessage())
		}
	}
	flush()
}

// confirm settles the attempts carried over a reconnect against the
// executor's first heartbeat: those it does not run are lost (it restarted,
// or finished them and its result was lost too) and fail as such.
func (p *pool) confirm(conn *execConn, running []*executorv1.RunningStep) {
	p.mu.Lock()
	if len(conn.unconfirmed) == 0 {
		p.mu.Unlock()
		return
	}
	runs := runningKeys(running)
	lost := map[attemptKey]string{}
	for k, taskID := range conn.unconfirmed {
		if _, still := conn.inflight[k]; still && !runs[k] {
			p.removeLocked(conn, k)
			lost[k] = taskID
		}
	}
	conn.unconfirmed = nil
	p.grantAndHandLocked(conn)
	p.mu.Unlock()
	for k, taskID := range lost {
		p.events.lost(taskID, k.stepID, k.attempt, conn.id)
	}
}

// setShare applies the part of an executor's capacity it grants this
// coordinator (it splits it between the coordinators it serves), never
// more than it declared in Describe.
func (p *pool) setShare(conn *execConn, share int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	grown := min(share, conn.declared) > conn.capacity
	conn.capacity = min(share, conn.declared)
	if grown {
		p.grantAndHandLocked(conn)
	}
}

// errUnresponsive ends a stream whose executor sent nothing for too long.
var errUnresponsive = errors.New("executor stopped answering (no heartbeat or result within the liveness timeout)")

// watch cancels a stream on which nothing has arrived for the liveness
// timeout. Executors heartbeat every few seconds, so silence means a hung
// process or a dead network path that TCP has not noticed yet.
func (p *pool) watch(ctx context.Context, cancel context.CancelCauseFunc, lastSeen *atomic.Int64) {
	tick := time.NewTicker(p.liveness / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.Sub(time.Unix(0, lastSeen.Load())) > p.liveness {
				cancel(errUnresponsive)
				return
			}
		}
	}
}

// broken marks a stream as gone. The executor's attempts keep their slots
// for the grace period, since it may come back and deliver their results.
func (p *pool) broken(conn *execConn, gen int, cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if conn.generation != gen || !conn.connected || p.conns[conn.id] != conn {
		return
	}
	conn.connected = false
	conn.stop()
	p.log.Warn("executor stream lost", "executor_id", conn.id, "address", conn.address, "in_flight", len(conn.inflight), "err", cause)
	conn.lostTimer = p.bg.afterFunc(p.grace, func() { p.expire(conn, gen) })
}

// expire gives up on an executor that did not come back within the grace
// period and fails its in-flight attempts.
func (p *pool) expire(conn *execConn, gen int) {
	p.mu.Lock()
	if conn.connected || conn.generation != gen || p.conns[conn.id] != conn {
		p.mu.Unlock()
		return
	}
	delete(p.conns, conn.id)
	lost := maps.Clone(conn.inflight)
	for k := range lost {
		p.removeLocked(conn, k)
	}
	p.mu.Unlock()
	_ = conn.cc.Close()
	p.log.Warn("executor expired", "executor_id", conn.id, "lost_attempts", len(lost))
	for k, taskID := range lost {
		p.events.lost(taskID, k.stepID, k.attempt, conn.id)
	}
}

// send queues a message on the executor's current stream. A message for an
// executor that is gone is dropped: its attempts are settled by the grace
// timer.
func (p *pool) send(executorID string, req *executorv1.ExecuteRequest) {
	p.mu.Lock()
	var out *mailbox[*executorv1.ExecuteRequest]
	if conn := p.conns[executorID]; conn != nil {
		out = conn.out
	}
	p.mu.Unlock()
	if out != nil {
		out.push(req)
	}
}

// close ends every stream; attempts in flight are left to be settled by the
// next coordinator run. The stream goroutines end on their own once their
// streams are cancelled.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*execConn{}
	p.attempts = map[attemptKey]*execConn{}
	p.waiters = map[string]*handlerWaiters{}
	if p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	for _, c := range conns {
		if c.lostTimer != nil {
			c.lostTimer.Stop()
		}
		if c.stop != nil {
			c.stop()
		}
	}
	p.mu.Unlock()
	for _, c := range conns {
		if c.cc != nil {
			_ = c.cc.Close()
		}
	}
}
