// Package bench drives a workload against a Tasker coordinator and reports
// what it costs: task and step throughput, task latency, the overhead the
// coordinator adds between a step's parents finishing and the step reaching
// its executor, group-commit batching, the coordinator's memory, and the
// CPU of each process taking part (coordinators, executors, load
// generator).
//
// The load generator runs the executors (a noop handler that records every
// dispatch), in its own process or each in a child process of its own (see
// Config.ExecutorBinary), creates tasks from one of Tasker's workflow
// shapes with a bounded number in flight, and learns of their ends from the
// coordinators' event logs (or, on request, a WatchTask stream per task).
// The coordinator is reached over gRPC only, so it may be a child process
// (see StartChild), a remote server or, in tests, one in the same process.
package bench

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
)

// Defaults for Config's zero values.
const (
	DefaultTasks            = 1000
	DefaultConcurrency      = 50
	DefaultExecutors        = 1
	DefaultExecutorCapacity = 512
	DefaultProgressInterval = 2 * time.Second
	// DefaultSampleTasks bounds the GetTask calls made after a run to
	// measure dispatch overhead: enough for a stable p99 over a few thousand
	// dispatches, few enough not to load the coordinator afterwards.
	DefaultSampleTasks = 300
	// DefaultReadyTimeout bounds the wait for executors to connect.
	DefaultReadyTimeout = 30 * time.Second
)

// streamsPerConn is how many concurrent workers share one client
// connection: one HTTP/2 connection serialises its frames, so a few
// connections keep the client side from becoming the bottleneck at high
// concurrency.
const streamsPerConn = 64

// Config describes one run. Coordinator is required; zero values elsewhere
// take the defaults above.
type Config struct {
	// Coordinator is the gRPC address host:port of the coordinator.
	Coordinator string
	// MetricsURL is the coordinator's Prometheus endpoint; empty leaves
	// commits, batch size (and, without PID, CPU and memory) unmeasured.
	MetricsURL string
	// PID is the coordinator's process id when it runs on this machine; its
	// CPU and peak RSS are then read from /proc. Zero falls back to
	// MetricsURL.
	PID int
	// PprofURL is the base of the coordinator's /debug/pprof endpoints
	// (its --pprof), for ProfileDir; empty leaves it unprofiled.
	PprofURL string
	// Coordinators are further coordinators sharing Coordinator's database
	// (PostgreSQL). Tasks are created on all of them in turn, each watched
	// on the coordinator that created it, and the executors register with
	// every one; commits, writes and CPU are summed over them and peak RSS
	// is the largest, so the report describes the cluster.
	Coordinators []Target
	// Store ("sqlite" or "postgres"), Schema (the PostgreSQL schema) and
	// Sync (the SQLite synchronous mode) describe the coordinators' store;
	// they are only reported.
	Store  string
	Schema string
	Sync   string
	// Shape is one of ShapeNames; Fanout is the width of the fanout shape.
	Shape  string
	Fanout int
	// Flow adds flow control to the template (see WithFlow), loose enough
	// never to hold a task back, to measure what its bookkeeping costs.
	// Tasks carry a tenant in their context either way.
	Flow bool
	// Tasks is how many tasks to create; 0 means no limit, in which case
	// Duration must be set.
	Tasks int
	// Concurrency is how many tasks are in flight (created, not yet
	// finished) at once.
	Concurrency int
	// Duration, when set, stops creating tasks after it; tasks in flight
	// still run to their end.
	Duration time.Duration
	// Executors is how many executors the run hosts, each with
	// ExecutorCapacity slots.
	Executors        int
	ExecutorCapacity int
	// Progress receives a progress line every ProgressInterval; nil means
	// none.
	Progress         io.Writer
	ProgressInterval time.Duration
	// SampleTasks is how many finished tasks are read back to measure
	// dispatch overhead.
	SampleTasks int
	// Logger receives the executors' logs; default discards them.
	Logger *slog.Logger
	// HTTPClient scrapes MetricsURL; default a client with a 10s timeout.
	HTTPClient *http.Client
	// DialOptions are used for bench's own calls to the coordinators
	// (templates, tasks): transport credentials and the API token.
	// Default: plaintext without a token.
	DialOptions []grpc.DialOption
	// ExecutorDialOptions are used by the executors bench hosts for their
	// calls to the coordinators (RegisterExecutor, ReportStepResult), which
	// need a token with executor access when tokens are on. Default:
	// plaintext without a token.
	ExecutorDialOptions []grpc.DialOption
	// ExecutorServerOptions are passed to the executors' gRPC servers, for
	// instance TLS credentials when the coordinators dial executors over
	// TLS.
	ExecutorServerOptions []grpc.ServerOption
	// ExecutorBinary, when set, runs each executor as a child process of
	// this tasker binary (its hidden `bench executor` command), so that its CPU is measured on
	// its own; empty runs them inside the load generator's process, whose
	// CPU figure then includes them. Child executors speak plaintext to
	// loopback coordinators, so ExecutorDialOptions and
	// ExecutorServerOptions cannot be combined with it.
	ExecutorBinary string
	// ExecutorOutput receives the executor processes' output; nil discards
	// it.
	ExecutorOutput io.Writer
	// Completions is how the load generator learns that a task ended:
	// CompletionsEvents (the default) or CompletionsWatch.
	Completions string
	// ProfileDir, when set, receives CPU profiles of every process over the
	// measured window (see profiler): coordinators with a PprofURL, the
	// executor processes and the load generator.
	ProfileDir string
}

// ErrInvalidConfig is wrapped by Run when a Config field is out of range.
var ErrInvalidConfig = errors.New("invalid bench config")

func (c Config) withDefaults() (Config, error) {
	if c.Coordinator == "" {
		return c, fmt.Errorf("%w: coordinator address is required", ErrInvalidConfig)
	}
	for i, t := range c.Coordinators {
		if t.Addr == "" {
			return c, fmt.Errorf("%w: further coordinator %d has no address", ErrInvalidConfig, i)
		}
	}
	if c.Shape == "" {
		c.Shape = "linear4"
	}
	if c.Fanout == 0 {
		c.Fanout = DefaultFanout
	}
	if c.Tasks < 0 || c.Concurrency < 0 || c.Executors < 0 || c.ExecutorCapacity < 0 || c.Duration < 0 || c.SampleTasks < 0 {
		return c, fmt.Errorf("%w: negative tasks, concurrency, executors, capacity, duration or sample", ErrInvalidConfig)
	}
	if c.Tasks == 0 && c.Duration == 0 {
		return c, fmt.Errorf("%w: give a number of tasks or a duration", ErrInvalidConfig)
	}
	switch c.Completions {
	case "":
		c.Completions = CompletionsEvents
	case CompletionsEvents, CompletionsWatch:
	default:
		return c, fmt.Errorf("%w: completions must be %s or %s, got %q", ErrInvalidConfig, CompletionsEvents, CompletionsWatch, c.Completions)
	}
	if c.ExecutorBinary != "" && (len(c.ExecutorDialOptions) > 0 || len(c.ExecutorServerOptions) > 0) {
		return c, fmt.Errorf("%w: executor processes speak plaintext; executor dial or server options need executors in this process", ErrInvalidConfig)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Executors == 0 {
		c.Executors = DefaultExecutors
	}
	if c.ExecutorCapacity == 0 {
		c.ExecutorCapacity = DefaultExecutorCapacity
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.SampleTasks == 0 {
		c.SampleTasks = DefaultSampleTasks
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if len(c.DialOptions) == 0 {
		c.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return c, nil
}

// Target is one coordinator a run loads and measures.
type Target struct {
	// Addr is its gRPC address host:port.
	Addr string
	// MetricsURL is its Prometheus endpoint; empty leaves its commits and
	// batch size (and, without PID, CPU and memory) unmeasured.
	MetricsURL string
	// PID is its process id when it runs on this machine, to read its CPU
	// and peak RSS from /proc; zero falls back to MetricsURL.
	PID int
	// PprofURL is the base of its /debug/pprof endpoints, for
	// Config.ProfileDir; empty leaves it unprofiled.
	PprofURL string
}

// target is a Target with the connections and counts of one run.
type target struct {
	Target
	clients []coordinatorv1.CoordinatorServiceClient
	// created counts the tasks created on this coordinator.
	created atomic.Int64
	// peakRSS is the highest process_resident_memory_bytes scraped, for a
	// coordinator whose /proc bench cannot read.
	peakRSS atomic.Int64
}

// sampled is a finished task and the coordinator that created it, which is
// the one asked for it again.
type sampled struct {
	id     string
	target int
}

// runner holds the state of one Run.
type runner struct {
	cfg      Config
	runID    string
	template *coordinatorv1.TaskTemplate
	targets  []*target
	rec      *Recorder
	fleet    fleet
	// ends tells of finished tasks with CompletionsEvents.
	ends *completions
	// tenants are the task contexts, one per tenant, taken in turn.
	tenants []*structpb.Struct

	start time.Time
	// next is the index of the next task to create.
	next     atomic.Int64
	inFlight atomic.Int64
	done     atomic.Int64
	failed   atomic.Int64
	// staleWatchStates counts watches that learnt of the task's end from its
	// own transition while task_state still gave an earlier state.
	staleWatchStates atomic.Int64

	// mu guards latencies, sample, rng and seen.
	mu        sync.Mutex
	latencies []time.Duration
	// sample is a uniform reservoir of finished tasks.
	sample []sampled
	rng    *rand.Rand
	// seen counts tasks offered to the reservoir.
	seen int
}

// Run registers the shape's template, starts the executors, runs the
// workload and measures it. It returns an error if any call to a
// coordinator fails: a run with failed calls measures the failure, not the
// orchestrator. Tasks that end in a state other than complete are counted
// in Report.TasksFailed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tmpl, err := Template(cfg.Shape, cfg.Fanout)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Flow {
		tmpl = WithFlow(tmpl, cfg.Concurrency)
	}
	r := &runner{
		cfg: cfg, runID: uuid.NewString()[:8], template: tmpl, rec: NewRecorder(),
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	for i := range FlowTenants {
		fields := map[string]*structpb.Value{"tenant": structpb.NewStringValue(fmt.Sprintf("t%d", i))}
		if cfg.Shape == "mapreduce" {
			fields[MapItemsField] = MapItems(cfg.Fanout)
		}
		r.tenants = append(r.tenants, &structpb.Struct{Fields: fields})
	}
	all := append([]Target{{Addr: cfg.Coordinator, MetricsURL: cfg.MetricsURL, PID: cfg.PID, PprofURL: cfg.PprofURL}}, cfg.Coordinators...)
	// The workers are spread over the coordinators, and each coordinator's
	// share over its connections.
	perTarget := (cfg.Concurrency + len(all) - 1) / len(all)
	nconns := min(max((perTarget+streamsPerConn-1)/streamsPerConn, 1), 8)
	for _, tg := range all {
		t := &target{Target: tg}
		for range nconns {
			conn, err := grpc.NewClient(tg.Addr, append(slices.Clone(cfg.DialOptions),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))...)
			if err != nil {
				return nil, fmt.Errorf("dial coordinator %s: %w", tg.Addr, err)
			}
			defer func() { _ = conn.Close() }()
			t.clients = append(t.clients, coordinatorv1.NewCoordinatorServiceClient(conn))
		}
		r.targets = append(r.targets, t)
	}
	if cfg.Flow {
		// A million a second per tenant: never short, always counted.
		limit := &coordinatorv1.RateLimit{Name: FlowLimit, Units: 1_000_000, Period: durationpb.New(time.Second), Burst: 1_000_000}
		if _, err := r.targets[0].clients[0].SetRateLimit(ctx, &coordinatorv1.SetRateLimitRequest{RateLimit: limit}); err != nil {
			return nil, fmt.Errorf("set rate limit %s: %w", FlowLimit, err)
		}
	}
	// One registration serves every coordinator: they share the store, and
	// each reads a template it has not cached from there.
	if _, err := r.targets[0].clients[0].RegisterTemplate(ctx, &coordinatorv1.RegisterTemplateRequest{Template: tmpl}); err != nil {
		return nil, fmt.Errorf("register template %s/%s: %w", tmpl.GetNamespace(), tmpl.GetName(), err)
	}

	var ids, addrs []string
	for i := range cfg.Executors {
		ids = append(ids, r.executorID(i))
	}
	for _, t := range r.targets {
		addrs = append(addrs, t.Addr)
	}
	if cfg.ExecutorBinary != "" {
		r.fleet, err = startProcessFleet(ctx, cfg, ids, addrs)
	} else {
		r.fleet, err = startInProcessFleet(ctx, cfg, r.rec, ids, addrs)
	}
	defer func() {
		if err := r.fleet.stop(); err != nil {
			cfg.Logger.Warn("executor stopped with an error", "err", err)
		}
	}()
	if err != nil {
		return nil, err
	}
	for _, t := range r.targets {
		if err := r.awaitExecutors(ctx, t); err != nil {
			return nil, err
		}
	}
	if cfg.Completions == CompletionsEvents {
		if r.ends, err = followCompletions(ctx, r.targets, tmpl.GetNamespace(), tmpl.GetName()); err != nil {
			return nil, err
		}
		defer r.ends.stop()
	}

	var prof *profiler
	if cfg.ProfileDir != "" {
		if prof, err = startProfiles(ctx, cfg.ProfileDir, r.targets, r.fleet, cfg.HTTPClient); err != nil {
			return nil, err
		}
	}
	before := r.measure(ctx)
	r.start = time.Now()
	progressDone := r.progress(ctx)
	loadErr := r.load(ctx)
	elapsed := time.Since(r.start)
	progressDone()
	after := r.measure(ctx)
	var profiles []string
	if prof != nil {
		var perr error
		profiles, perr = prof.stop(ctx)
		if perr != nil && loadErr == nil {
			loadErr = perr
		}
	}
	if loadErr != nil {
		return nil, loadErr
	}
	overheads, err := r.dispatchOverheads(ctx)
	if err != nil {
		return nil, err
	}
	rep, err := r.report(ctx, elapsed, before, after, overheads)
	if err != nil {
		return nil, err
	}
	rep.Profiles = profiles
	return rep, nil
}

func (r *runner) executorID(i int) string { return fmt.Sprintf("bench-%s-%d", r.runID, i) }

// awaitExecutors waits until coordinator t has a stream to every executor
// of this run, so the first tasks do not measure connection setup.
func (r *runner) awaitExecutors(ctx context.Context, t *target) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultReadyTimeout)
	defer cancel()
	want := make(map[string]bool, r.cfg.Executors)
	for i := range r.cfg.Executors {
		want[r.executorID(i)] = true
	}
	for {
		resp, err := t.clients[0].ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
		if err == nil {
			connected := 0
			for _, e := range resp.GetExecutors() {
				if want[e.GetId()] && e.GetConnected() {
					connected++
				}
			}
			if connected == len(want) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("executors did not connect to %s: %w", t.Addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// claim returns the index of the next task to create, or false once the
// task limit or the duration is reached.
func (r *runner) claim() (int64, bool) {
	if r.cfg.Duration > 0 && time.Since(r.start) >= r.cfg.Duration {
		return 0, false
	}
	i := r.next.Add(1) - 1
	if r.cfg.Tasks > 0 && i >= int64(r.cfg.Tasks) {
		return 0, false
	}
	return i, true
}

// load runs cfg.Concurrency workers until no task is left to claim; the
// first failure stops them all. Task i goes to coordinator i mod the
// number of coordinators, so each gets an equal share whatever the speed of
// the others.
func (r *runner) load(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for w := range r.cfg.Concurrency {
		wg.Go(func() {
			for {
				i, ok := r.claim()
				if !ok || ctx.Err() != nil {
					return
				}
				ti := int(i % int64(len(r.targets)))
				if err := r.runTask(ctx, ti, w, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// runTask creates task i on coordinator ti, using worker w's connection to
// it, and waits for its end. Its latency runs from the start of the create
// call to the recorded time of the task's terminal transition
// (CompletionsEvents), or to that transition's arrival at bench
// (CompletionsWatch).
func (r *runner) runTask(ctx context.Context, ti, w int, i int64) error {
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	t := r.targets[ti]
	client := t.clients[w%len(t.clients)]
	// Learning of ends from the event log, bench needs only the task's id
	// and state from the create, not its steps.
	view := coordinatorv1.TaskView_TASK_VIEW_FULL
	if r.ends != nil {
		view = coordinatorv1.TaskView_TASK_VIEW_BASIC
	}
	start := time.Now()
	resp, err := client.CreateTask(ctx, &coordinatorv1.CreateTaskRequest{
		Namespace: r.template.GetNamespace(), Name: r.template.GetName(), Version: r.template.GetVersion(),
		IdempotencyKey: fmt.Sprintf("bench-%s-%d", r.runID, i), Context: r.tenants[i%FlowTenants],
		View: view,
	})
	if err != nil {
		return fmt.Errorf("create task %d on %s: %w", i, t.Addr, err)
	}
	t.created.Add(1)
	id := resp.GetTask().GetId()
	final := resp.GetTask().GetState()
	var endedAt time.Time
	switch {
	case statepb.Terminal(final):
	case r.ends != nil:
		end, err := r.ends.await(ctx, id)
		if err != nil {
			return fmt.Errorf("%w (on %s)", err, t.Addr)
		}
		final, endedAt = end.state, end.at
	default:
		// Watching from the last transition the create returned spares
		// the coordinator reading the task's history back.
		var after int64
		for _, st := range resp.GetTask().GetSteps() {
			for _, tr := range st.GetTransitions() {
				after = max(after, tr.GetSeq())
			}
		}
		for _, tr := range resp.GetTask().GetTransitions() {
			after = max(after, tr.GetSeq())
		}
		if final, err = r.watch(ctx, client, id, after); err != nil {
			return fmt.Errorf("%w (on %s)", err, t.Addr)
		}
	}
	latency := time.Since(start)
	if !endedAt.IsZero() {
		// The coordinator's clock against bench's: one clock when both
		// run on this machine. Round() drops start's monotonic reading, so
		// both sides are wall-clock times.
		latency = max(endedAt.Sub(start.Round(0)), 0)
	}
	if final != coordinatorv1.State_STATE_COMPLETE {
		r.failed.Add(1)
	}
	r.finished(sampled{id: id, target: ti}, latency)
	return nil
}

// watch returns the terminal state of task id as soon as a transition
// carrying it arrives: one whose task_state is terminal, or the task's own
// transition to a terminal state. The second alone is counted in
// staleWatchStates: the coordinator should have set task_state to match.
func (r *runner) watch(ctx context.Context, client coordinatorv1.CoordinatorServiceClient, id string, afterSeq int64) (coordinatorv1.State, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.WatchTask(ctx, &coordinatorv1.WatchTaskRequest{Id: id, AfterSeq: afterSeq})
	if err != nil {
		return 0, fmt.Errorf("watch task %s: %w", id, err)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("watch task %s: stream ended before the task did", id)
		}
		if err != nil {
			return 0, fmt.Errorf("watch task %s: %w", id, err)
		}
		if statepb.Terminal(msg.GetTaskState()) {
			return msg.GetTaskState(), nil
		}
		if tr := msg.GetTransition(); tr.GetStepName() == "" && statepb.Terminal(tr.GetToState()) {
			r.staleWatchStates.Add(1)
			return tr.GetToState(), nil
		}
	}
}

// finished records a task's latency and offers it to the reservoir.
func (r *runner) finished(s sampled, latency time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latencies = append(r.latencies, latency)
	r.seen++
	switch {
	case len(r.sample) < r.cfg.SampleTasks:
		r.sample = append(r.sample, s)
	default:
		if j := r.rng.IntN(r.seen); j < len(r.sample) {
			r.sample[j] = s
		}
	}
	r.done.Add(1)
}

// dispatchOverheads reads the sampled tasks back, each from the coordinator
// that created it, and measures each step's dispatch overhead.
func (r *runner) dispatchOverheads(ctx context.Context) ([]time.Duration, error) {
	r.mu.Lock()
	sample := append([]sampled(nil), r.sample...)
	r.mu.Unlock()
	tasks := make([]*coordinatorv1.Task, len(sample))
	errs := make([]error, len(sample))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, s := range sample {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t := r.targets[s.target]
			resp, err := t.clients[i%len(t.clients)].GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: s.id})
			if err != nil {
				errs[i] = fmt.Errorf("get task %s from %s: %w", s.id, t.Addr, err)
				return
			}
			tasks[i] = resp.GetTask()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var keys []attemptKey
	for _, t := range tasks {
		for _, st := range t.GetSteps() {
			if st.GetAttempts() > 0 {
				keys = append(keys, attemptKey{stepID: st.GetId(), attempt: int(st.GetAttempts())})
			}
		}
	}
	received, err := r.fleet.receivedAt(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read the executors' receive times: %w", err)
	}
	return dispatchOverheads(tasks, func(stepID string, attempt int) (time.Time, bool) {
		at, ok := received[attemptKey{stepID: stepID, attempt: attempt}]
		return at, ok
	}), nil
}
