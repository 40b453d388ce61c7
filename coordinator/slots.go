package coordinator

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
	"github.com/tasker-go/tasker/template"
)

// attemptKey identifies one attempt of one step.
type attemptKey struct {
	stepID  string
	attempt int32
}

// waiter is a ready step that found no free executor slot for its handler.
type waiter struct {
	taskID, stepID, handler string
	// priority is its task's; since is when it began to wait.
	priority int
	since    time.Time
	seq      uint64
}

// effective is w's priority at now: its task's, plus one level for every
// aging it has waited, so a step of low priority is never passed over for
// ever by a stream of higher ones.
func (w *waiter) effective(now time.Time, aging time.Duration) int64 {
	return int64(w.priority) + int64(now.Sub(w.since)/aging)
}

// before orders two waiters for a slot: higher effective priority first,
// then the one that has waited longer.
func (w *waiter) before(o *waiter, now time.Time, aging time.Duration) bool {
	if a, b := w.effective(now, aging), o.effective(now, aging); a != b {
		return a > b
	}
	return w.seq < o.seq
}

// handlerWaiters are the waiters of one handler, a FIFO queue per priority:
// within a priority the oldest is first, so only the queues' heads compete.
type handlerWaiters [template.MaxPriority + 1]waitQueue

func (h *handlerWaiters) len() int {
	n := 0
	for i := range h {
		n += h[i].len()
	}
	return n
}

// first is the queue whose head goes next, nil if all are empty.
func (h *handlerWaiters) first(now time.Time, aging time.Duration) *waitQueue {
	var best *waitQueue
	for i := range h {
		if q := &h[i]; q.len() > 0 && (best == nil || q.peek().before(best.peek(), now, aging)) {
			best = q
		}
	}
	return best
}

// waitQueue holds waiters oldest first.
type waitQueue struct {
	items []waiter
	head  int
}

func (q *waitQueue) len() int { return len(q.items) - q.head }

func (q *waitQueue) peek() *waiter { return &q.items[q.head] }

func (q *waitQueue) pop() waiter {
	w := q.items[q.head]
	q.items[q.head] = waiter{}
	q.head++
	if q.head > len(q.items)/2 {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	return w
}

// poolEvents are the engine's callbacks. They are always called without the
// pool's lock held.
type poolEvents interface {
	// results delivers step results read, in this order, from the stream
	// of an executor; it returns once they are applied or handed to a
	// goroutine that retries them.
	results(executorID string, rs []*executorv1.StepResult)
	// lost reports an attempt whose executor went away for longer than the
	// grace period, or did not confirm it after reconnecting.
	lost(taskID, stepID string, attempt int32, executorID string)
	// unreported reports an adopted attempt that its executor no longer
	// runs, whose result never came here (see pool.checkAdopted).
	unreported(taskID, stepID string, attempt int32, executorID string)
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
// Slots are accounted by the stream a result arrives on (or, for a result
// reported through the API, by where the attempt was sent), never by the
// executor id a message claims. The stream side lives in streams.go.
type pool struct {
	log           *slog.Logger
	dialOptions   []grpc.DialOption
	coordinatorID string
	grace         time.Duration
	liveness      time.Duration
	events        poolEvents
	bg            *routines
	// messages counts what the streams read, by kind.
	messages *prometheus.CounterVec
	// leastReceive is the smallest receive limit any executor registered
	// has declared (0 before the first): a request no larger fits every
	// executor, so dispatch checks most requests without taking mu.
	leastReceive atomic.Int64

	mu    sync.Mutex // protects every field below and every execConn's mutable fields
	conns map[string]*execConn
	// attempts says on which executor each attempt in flight runs.
	attempts map[attemptKey]*execConn
	// waiters are the steps waiting for a slot, by handler.
	waiters map[string]*handlerWaiters
	// aging is how long a waiter waits to gain one priority level.
	aging  time.Duration
	seq    uint64
	closed bool
	// applying counts results whose slots were freed but that are not yet
	// applied; shutdown waits for them as for attempts in flight.
	applying int
	// idle, when not nil, is closed once nothing is in flight or applying.
	idle chan struct{}
}

// execConn is one executor: what it declared, its slots, and its current
// Execute stream. It keeps its identity across reconnects, so attempts in
// flight stay attached to it.
type execConn struct {
	id string

	// Guarded by pool.mu.
	address, language string
	handlers          []string
	coordinators      []string // as the executor described itself
	declared          int      // capacity from Describe
	maxReceive        int      // largest ExecuteRequest it accepts (Describe)
	client            executorv1.ExecutorServiceClient
	cc                *grpc.ClientConn
	capacity          int // this coordinator's share of declared
	used              int // slots reserved or in flight
	inflight          map[attemptKey]string
	// unconfirmed are attempts carried over from before a reconnect that
	// the executor has not yet reported running.
	unconfirmed map[attemptKey]string
	// adopted are attempts this coordinator did not dispatch but took on
	// from a heartbeat (pool.adopt), with how many heartbeats in a row have
	// not listed them since.
	adopted     map[attemptKey]int
	connected   bool
	connectedAt time.Time
	lastPick    uint64
	lostTimer   *time.Timer
	generation  int
	stop        func()
	out         *mailbox[*executorv1.ExecuteRequest]

	// lastHeard is when the stream last carried anything, in unix
	// nanoseconds; written by the stream's reader without pool.mu.
	lastHeard atomic.Int64
}

func (c *execConn) hosts(handler string) bool {
	_, ok := slices.BinarySearch(c.handlers, handler)
	return ok
}

func newPool(log *slog.Logger, coordinatorID string, dial []grpc.DialOption, grace, liveness time.Duration, ev poolEvents, bg *routines) *pool {
	return &pool{
		log: log, coordinatorID: coordinatorID, dialOptions: dial, grace: grace, liveness: liveness, events: ev, bg: bg,
		conns: map[string]*execConn{}, attempts: map[attemptKey]*execConn{}, waiters: map[string]*handlerWaiters{},
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

// wait queues a ready step until a slot for its handler frees up; among
// those waiting, higher priority goes first (see waiter.before).
func (p *pool) wait(taskID, stepID, handler string, priority int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	hw := p.waiters[handler]
	if hw == nil {
		hw = &handlerWaiters{}
		p.waiters[handler] = hw
	}
	priority = min(max(priority, template.MinPriority), template.MaxPriority)
	q := &hw[priority]
	q.items = append(q.items, waiter{taskID: taskID, stepID: stepID, handler: handler, priority: priority, since: time.Now(), seq: p.seq})
	// The step found no free slot before its change was committed; one may
	// have freed since (a release that found no waiter, an executor that
	// registered), and no release will come for it: hand it out now.
	for _, c := range p.conns {
		if c.connected && c.used < c.capacity && c.hosts(handler) {
			p.grantAndHandLocked(c)
		}
	}
}

// track records that an attempt was sent to an executor on a reserved slot.
func (p *pool) track(executorID, taskID, stepID string, attempt int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if conn := p.conns[executorID]; conn != nil {
		p.addLocked(conn, attemptKey{stepID, attempt}, taskID)
	}
}

func (p *pool) addLocked(conn *execConn, k attemptKey, taskID string) {
	conn.inflight[k] = taskID
	p.attempts[k] = conn
}

// removeLocked forgets an attempt in flight on conn and frees its slot.
func (p *pool) removeLocked(conn *execConn, k attemptKey) {
	delete(conn.inflight, k)
	delete(conn.adopted, k)
	if p.attempts[k] == conn {
		delete(p.attempts, k)
	}
	conn.used--
	p.checkIdleLocked()
}

func (p *pool) checkIdleLocked() {
	if len(p.attempts) == 0 && p.applying == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// applied ends the count of n results settled with settle.
func (p *pool) applied(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applying -= n
	p.checkIdleLocked()
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
	if other := p.attempts[k]; other != nil {
		// Carried over on another executor: it now runs here.
		p.removeLocked(other, k)
		p.grantAndHandLocked(other)
	}
	p.addLocked(conn, k, taskID)
	conn.used++
	if conn.adopted == nil {
		conn.adopted = map[attemptKey]int{}
	}
	conn.adopted[k] = 0
	return true
}

// runningKeys are the attempts a heartbeat lists.
func runningKeys(running []*executorv1.RunningStep) map[attemptKey]bool {
	runs := make(map[attemptKey]bool, len(running))
	for _, r := range running {
		runs[attemptKey{r.GetStepId(), r.GetAttempt()}] = true
	}
	return runs
}

// adoptedMisses is how many heartbeats in a row may leave out an adopted
// attempt before it is presumed to have ended with its result gone
// elsewhere. Two, not one: a result the executor redelivers through
// ReportStepResult (its stream broke) may arrive just after a heartbeat.
const adoptedMisses = 2

// checkAdopted settles adopted attempts against a heartbeat. An executor
// sends a result on the stream of the coordinator that dispatched the
// attempt, so an adopted attempt's result goes there, not here; if that
// coordinator no longer holds the task (it lost its lease), nobody applies
// it, and the attempt would stay in flight here for good. So an adopted
// attempt that heartbeats stop listing, with no result here, is reported
// unreported, and fails like a lost one: it runs again.
func (p *pool) checkAdopted(conn *execConn, running []*executorv1.RunningStep) {
	p.mu.Lock()
	if len(conn.adopted) == 0 {
		p.mu.Unlock()
		return
	}
	runs := runningKeys(running)
	gone := map[attemptKey]string{}
	for k, misses := range conn.adopted {
		switch {
		case runs[k]:
			conn.adopted[k] = 0
		case misses+1 < adoptedMisses:
			conn.adopted[k] = misses + 1
		default:
			gone[k] = conn.inflight[k]
			p.removeLocked(conn, k)
		}
	}
	if len(gone) > 0 {
		p.grantAndHandLocked(conn)
	}
	p.mu.Unlock()
	for k, taskID := range gone {
		p.events.unreported(taskID, k.stepID, k.attempt, conn.id)
	}
}

// defaultMaxReceive is gRPC's default receive limit, which an executor
// that declares none (max_receive_bytes 0) has.
const defaultMaxReceive = 4 << 20

// fitsEverywhere reports whether a request of n bytes is within every
// registered executor's receive limit.
func (p *pool) fitsEverywhere(n int) bool {
	return int64(n) <= p.leastReceive.Load()
}

// maxReceive is the largest ExecuteRequest the executor accepts.
func (p *pool) maxReceive(executorID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if conn := p.conns[executorID]; conn != nil && conn.maxReceive > 0 {
		return conn.maxReceive
	}
	return defaultMaxReceive
}

// release gives back a reserved slot that was not used; a waiting step may
// take it.
func (p *pool) release(executorID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	conn := p.conns[executorID]
	if conn == nil {
		return
	}
	conn.used--
	p.grantAndHandLocked(conn)
}

// settle frees the slot of an attempt whose result arrived on conn's
// stream; a result for an attempt conn does not run frees nothing. The
// result counts as applying until applied is called for it.
func (p *pool) settle(conn *execConn, k attemptKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applying++
	if _, ok := conn.inflight[k]; !ok {
		return false
	}
	p.removeLocked(conn, k)
	p.grantAndHandLocked(conn)
	return true
}

// settleReported frees the slot of an attempt whose result came through the
// API, on whichever executor it was sent to, and returns that executor's
// id ("" if the attempt was not in flight here). Like settle, the result
// counts as applying until applied is called.
func (p *pool) settleReported(k attemptKey) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applying++
	conn := p.attempts[k]
	if conn == nil {
		return ""
	}
	p.removeLocked(conn, k)
	p.grantAndHandLocked(conn)
	return conn.id
}

// grantAndHandLocked reserves free slots of conn for the oldest waiters it
// can serve, removes them from their queues and hands each to the engine
// on a goroutine of its own (the engine takes task locks, which callers of
// the pool may hold).
func (p *pool) grantAndHandLocked(conn *execConn) {
	if !conn.connected {
		return
	}
	now := time.Now()
	for conn.used < conn.capacity {
		var best *waitQueue
		for _, h := range conn.handlers {
			hw := p.waiters[h]
			if hw == nil {
				continue
			}
			if q := hw.first(now, p.aging); q != nil && (best == nil || q.peek().before(best.peek(), now, p.aging)) {
				best = q
			}
		}
		if best == nil {
			return
		}
		w := best.pop()
		if p.waiters[w.handler].len() == 0 {
			delete(p.waiters, w.handler)
		}
		conn.used++
		id := conn.id
		if !p.bg.goFn(func() { p.events.slot(w, id) }) {
			conn.used--
			return
		}
	}
}

// whenIdle returns a channel closed once no attempt is in flight.
func (p *pool) whenIdle() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.attempts) == 0 && p.applying == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	return p.idle
}

// inFlight counts the attempts running on all executors.
func (p *pool) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.attempts)
}

// hosted reports whether some connected executor hosts handler.
func (p *pool) hosted(handler string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.connected && c.hosts(handler) {
			return true
		}
	}
	return false
}

func (p *pool) infoLocked(c *execConn) *coordinatorv1.ExecutorInfo {
	info := &coordinatorv1.ExecutorInfo{
		Id: c.id, Address: c.address, Handlers: c.handlers, Capacity: int32(c.capacity),
		InFlight: int32(len(c.inflight)), Language: c.language, Connected: c.connected,
	}
	if c.connected {
		info.ConnectedAt = timestamppb.New(c.connectedAt)
	}
	if ns := c.lastHeard.Load(); ns > 0 {
		info.LastHeard = timestamppb.New(time.Unix(0, ns))
	}
	info.Coordinators = c.coordinators
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
	slices.SortFunc(out, func(a, b *coordinatorv1.ExecutorInfo) int { return strings.Compare(a.Id, b.Id) })
	return out
}
