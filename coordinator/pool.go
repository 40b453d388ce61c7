package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-go/tasker/executor"
	"google.golang.org/grpc/metadata"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// attemptKey identifies one attempt of one step.
type attemptKey struct {
	stepID  string
	attempt int32
}

// waiter is a ready step that found no free executor slot for its handler.
type waiter struct {
	taskID, stepID, handler string
	seq                     uint64
}

// poolEvents are the engine's callbacks. They are always called without the
// pool's lock held.
type poolEvents interface {
	// result delivers a step result read from an executor's stream.
	result(r *executorv1.StepResult)
	// lost reports an attempt whose executor went away for longer than the
	// grace period.
	lost(taskID, stepID string, attempt int32, executorID string)
	// slot hands a reserved slot on an executor to a waiting step; the
	// engine must either dispatch the step there or give the slot back with
	// release.
	slot(w waiter, executorID string)
	// running reports the attempts an executor says it is running, from its
	// heartbeats.
	running(executorID string, attempts []*executorv1.RunningStep)
}

// pool tracks executors, their capacity and in-flight attempts, and the
// ready steps waiting for a slot. Capacity is reserved before a dispatch is
// committed, so an executor never has more attempts than it declared.
type pool struct {
	log           *slog.Logger
	dialOptions   []grpc.DialOption
	coordinatorID string
	grace         time.Duration
	liveness      time.Duration
	events        poolEvents

	mu      sync.Mutex // protects conns, waiters, seq, closed and every execConn's mutable fields
	conns   map[string]*execConn
	waiters []waiter
	seq     uint64
	closed  bool
}

// execConn is one executor and its Execute stream.
type execConn struct {
	id, address, language string
	handlers              []string
	declared              int // capacity from Describe
	client                executorv1.ExecutorServiceClient
	cc                    *grpc.ClientConn

	// Guarded by pool.mu.
	capacity int // this coordinator's share of declared
	used     int // slots reserved or in flight
	inflight map[attemptKey]string
	// unconfirmed are attempts carried over from before a reconnect that
	// the executor has not yet reported running.
	unconfirmed map[attemptKey]string
	connected   bool
	connectedAt time.Time
	lastPick    uint64
	lostTimer   *time.Timer
	generation  int
	stop        context.CancelFunc
	out         *outbox
}

func (c *execConn) hosts(handler string) bool { return slices.Contains(c.handlers, handler) }

func newPool(log *slog.Logger, coordinatorID string, dial []grpc.DialOption, grace, liveness time.Duration, ev poolEvents) *pool {
	return &pool{log: log, coordinatorID: coordinatorID, dialOptions: dial, grace: grace, liveness: liveness, events: ev, conns: map[string]*execConn{}}
}

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
	inflight := map[attemptKey]string{}
	used := 0
	if conn != nil {
		// The same executor came back (or moved): its attempts in flight
		// may still deliver results, so they keep their slots.
		if conn.lostTimer != nil {
			conn.lostTimer.Stop()
		}
		if conn.stop != nil {
			conn.stop()
		}
		_ = conn.cc.Close()
		inflight, used = conn.inflight, conn.used
	}
	conn = &execConn{
		id: desc.GetExecutorId(), address: address, language: desc.GetLanguage(),
		handlers: slices.Sorted(slices.Values(desc.GetHandlers())), capacity: int(desc.GetCapacity()), declared: int(desc.GetCapacity()),
		client: client, cc: cc, inflight: inflight, used: used,
	}
	// The attempts carried over must be confirmed by the executor's first
	// heartbeat: one that restarted (same id, new process) runs none of
	// them, and they would otherwise be awaited forever.
	conn.unconfirmed = maps.Clone(inflight)
	p.conns[conn.id] = conn
	streamCtx, stop := context.WithCancel(context.Background())
	conn.stop = stop
	conn.generation++
	conn.out = newOutbox()
	conn.connected = true
	conn.connectedAt = time.Now()
	gen, out := conn.generation, conn.out
	info := p.infoLocked(conn)
	grants := p.grantLocked(conn)
	p.mu.Unlock()

	go p.runStream(streamCtx, conn, gen, out)
	p.log.Info("executor registered", "executor_id", conn.id, "address", address, "handlers", conn.handlers, "capacity", conn.declared)
	p.hand(grants, conn)
	return info, nil
}

// runStream owns one Execute stream: a sender draining the outbox, a
// watchdog that ends the stream if the executor stops answering, and this
// goroutine reading results until the stream ends.
func (p *pool) runStream(ctx context.Context, conn *execConn, gen int, out *outbox) {
	defer out.close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := conn.client.Execute(metadata.AppendToOutgoingContext(ctx, executor.CoordinatorIDMetadata, p.coordinatorID))
	if err != nil {
		p.broken(conn, gen, fmt.Errorf("open stream: %w", err))
		return
	}
	sendErr := make(chan error, 1)
	go func() { sendErr <- out.drain(ctx, stream.Send) }()
	var lastSeen atomic.Int64
	lastSeen.Store(time.Now().UnixNano())
	go p.watch(ctx, cancel, &lastSeen)
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
			out.close()
			cancel(nil)
			<-sendErr
			return
		}
		lastSeen.Store(time.Now().UnixNano())
		switch k := msg.GetKind().(type) {
		case *executorv1.ExecuteResponse_StepResult:
			// Free the slot in stream order, before a heartbeat that
			// follows could count the attempt as missing.
			r := k.StepResult
			p.settle(r.GetExecutorId(), r.GetStepId(), r.GetAttempt())
			go p.events.result(r)
		case *executorv1.ExecuteResponse_Heartbeat:
			if share := int(k.Heartbeat.GetCapacity()); share > 0 {
				p.setShare(conn, share)
			}
			p.confirm(conn, k.Heartbeat.GetRunning())
			if len(k.Heartbeat.GetRunning()) > 0 {
				go p.events.running(conn.id, k.Heartbeat.GetRunning())
			}
		case *executorv1.ExecuteResponse_Progress:
			pr := k.Progress
			p.log.Debug("step progress", "task_id", pr.GetTaskId(), "step_id", pr.GetStepId(), "percent", pr.GetPercent(), "message", pr.GetMessage())
		}
	}
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
	runs := make(map[attemptKey]bool, len(running))
	for _, r := range running {
		runs[attemptKey{r.GetStepId(), r.GetAttempt()}] = true
	}
	lost := map[attemptKey]string{}
	for k, taskID := range conn.unconfirmed {
		if _, still := conn.inflight[k]; still && !runs[k] {
			delete(conn.inflight, k)
			conn.used--
			lost[k] = taskID
		}
	}
	conn.unconfirmed = nil
	grants := p.grantLocked(conn)
	p.mu.Unlock()
	p.hand(grants, conn)
	for k, taskID := range lost {
		p.events.lost(taskID, k.stepID, k.attempt, conn.id)
	}
}

// setShare applies the part of an executor's capacity it grants this
// coordinator (it splits it between the coordinators it serves), never
// more than it declared in Describe.
func (p *pool) setShare(conn *execConn, share int) {
	p.mu.Lock()
	grown := min(share, conn.declared) > conn.capacity
	conn.capacity = min(share, conn.declared)
	var grants []waiter
	if grown {
		grants = p.grantLocked(conn)
	}
	p.mu.Unlock()
	p.hand(grants, conn)
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
	conn.lostTimer = time.AfterFunc(p.grace, func() { p.expire(conn, gen) })
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
	lost := conn.inflight
	conn.inflight = map[attemptKey]string{}
	conn.used = 0
	p.mu.Unlock()
	_ = conn.cc.Close()
	p.log.Warn("executor expired", "executor_id", conn.id, "lost_attempts", len(lost))
	for k, taskID := range lost {
		p.events.lost(taskID, k.stepID, k.attempt, conn.id)
	}
}

// acquire reserves a slot on the least loaded connected executor hosting
// handler and returns its id, or "" if none has a free slot. An executor
// named avoid (the one a failed attempt ran on) is taken only if no other
// can serve.
func (p *pool) acquire(handler, avoid string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best, fallback *execConn
	for _, c := range p.conns {
		if !c.connected || c.used >= c.capacity || !c.hosts(handler) {
			continue
		}
		if c.id == avoid {
			fallback = c
			continue
		}
		if best == nil || loadLess(c, best) {
			best = c
		}
	}
	if best == nil {
		best = fallback
	}
	if best == nil {
		return ""
	}
	best.used++
	p.seq++
	best.lastPick = p.seq
	return best.id
}

// loadLess orders executors by load, then by how long ago they were picked,
// so equal executors take turns.
func loadLess(a, b *execConn) bool {
	la, lb := a.used*b.capacity, b.used*a.capacity
	if la != lb {
		return la < lb
	}
	return a.lastPick < b.lastPick
}

// wait queues a ready step until a slot for its handler frees up.
func (p *pool) wait(taskID, stepID, handler string) {
	p.mu.Lock()
	p.seq++
	p.waiters = append(p.waiters, waiter{taskID: taskID, stepID: stepID, handler: handler, seq: p.seq})
	p.mu.Unlock()
}

// track records that an attempt was sent to an executor on a reserved slot.
func (p *pool) track(executorID, taskID, stepID string, attempt int32) {
	p.mu.Lock()
	if conn := p.conns[executorID]; conn != nil {
		conn.inflight[attemptKey{stepID, attempt}] = taskID
	}
	p.mu.Unlock()
}

// adopt records an attempt an executor reports running that the
// coordinator did not know was there (it restarted). The slot counts
// against the executor's capacity from now on, even if that overbooks it:
// the work is really running there.
func (p *pool) adopt(executorID, taskID, stepID string, attempt int32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	conn := p.conns[executorID]
	if conn == nil {
		return false
	}
	k := attemptKey{stepID, attempt}
	if _, ok := conn.inflight[k]; ok {
		return true
	}
	conn.inflight[k] = taskID
	conn.used++
	return true
}

// release gives back a reserved slot that was not used; a waiting step may
// take it.
func (p *pool) release(executorID string) {
	p.mu.Lock()
	conn := p.conns[executorID]
	if conn == nil {
		p.mu.Unlock()
		return
	}
	conn.used--
	grants := p.grantLocked(conn)
	p.mu.Unlock()
	p.hand(grants, conn)
}

// settle frees the slot of an attempt whose result arrived. It reports
// whether the attempt was in flight on that executor.
func (p *pool) settle(executorID, stepID string, attempt int32) bool {
	p.mu.Lock()
	conn := p.conns[executorID]
	if conn == nil {
		p.mu.Unlock()
		return false
	}
	k := attemptKey{stepID, attempt}
	if _, ok := conn.inflight[k]; !ok {
		p.mu.Unlock()
		return false
	}
	delete(conn.inflight, k)
	conn.used--
	grants := p.grantLocked(conn)
	p.mu.Unlock()
	p.hand(grants, conn)
	return true
}

// grantLocked reserves free slots of conn for the oldest waiters it can
// serve and removes them from the queue.
func (p *pool) grantLocked(conn *execConn) []waiter {
	if !conn.connected {
		return nil
	}
	var grants []waiter
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if conn.used < conn.capacity && conn.hosts(w.handler) {
			conn.used++
			grants = append(grants, w)
			continue
		}
		kept = append(kept, w)
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
	return grants
}

func (p *pool) hand(grants []waiter, conn *execConn) {
	for _, w := range grants {
		go p.events.slot(w, conn.id)
	}
}

// send queues a message on the executor's current stream. A message for an
// executor that is gone is dropped: its attempts are settled by the grace
// timer.
func (p *pool) send(executorID string, req *executorv1.ExecuteRequest) {
	p.mu.Lock()
	conn := p.conns[executorID]
	var out *outbox
	if conn != nil {
		out = conn.out
	}
	p.mu.Unlock()
	if out != nil {
		out.push(req)
	}
}

// inFlight counts the attempts running on all executors.
func (p *pool) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.conns {
		n += len(c.inflight)
	}
	return n
}

func (p *pool) infoLocked(c *execConn) *coordinatorv1.ExecutorInfo {
	info := &coordinatorv1.ExecutorInfo{
		Id: c.id, Address: c.address, Handlers: c.handlers, Capacity: int32(c.capacity),
		InFlight: int32(len(c.inflight)), Language: c.language, Connected: c.connected,
	}
	if c.connected {
		info.ConnectedAt = timestamppb.New(c.connectedAt)
	}
	return info
}

// list describes every known executor, ordered by id.
func (p *pool) list() []*coordinatorv1.ExecutorInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*coordinatorv1.ExecutorInfo, 0, len(p.conns))
	for _, c := range p.conns {
		out = append(out, p.infoLocked(c))
	}
	slices.SortFunc(out, func(a, b *coordinatorv1.ExecutorInfo) int {
		if a.Id < b.Id {
			return -1
		}
		if a.Id > b.Id {
			return 1
		}
		return 0
	})
	return out
}

// close ends every stream; attempts in flight are left to be settled by the
// next coordinator run.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*execConn{}
	p.waiters = nil
	p.mu.Unlock()
	for _, c := range conns {
		if c.lostTimer != nil {
			c.lostTimer.Stop()
		}
		if c.stop != nil {
			c.stop()
		}
		_ = c.cc.Close()
	}
}

// outbox is an unbounded queue in front of a stream, so that dispatching
// never blocks a task on a slow executor's flow control.
type outbox struct {
	mu     sync.Mutex // protects queue and done
	queue  []*executorv1.ExecuteRequest
	done   bool
	signal chan struct{}
}

func newOutbox() *outbox { return &outbox{signal: make(chan struct{}, 1)} }

func (o *outbox) push(m *executorv1.ExecuteRequest) {
	o.mu.Lock()
	if !o.done {
		o.queue = append(o.queue, m)
	}
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

func (o *outbox) close() {
	o.mu.Lock()
	o.done = true
	o.queue = nil
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// drain sends queued messages until the outbox closes or a send fails.
func (o *outbox) drain(ctx context.Context, send func(*executorv1.ExecuteRequest) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.signal:
		}
		o.mu.Lock()
		batch, done := o.queue, o.done
		o.queue = nil
		o.mu.Unlock()
		if done {
			return nil
		}
		for _, m := range batch {
			if err := send(m); err != nil {
				return err
			}
		}
	}
}
