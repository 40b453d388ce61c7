package e2e

// TestChaos runs a real coordinator and three executors as processes, feeds
// them tasks at a steady pace, and meanwhile kill -9s the coordinator and
// executors and partitions one executor behind a TCP proxy. Afterwards it
// audits the stored transitions: every task complete, none lost or
// duplicated, no step completed twice or started before its parents.
//
// The small version (100 tasks, one fault of each kind, time-based seed)
// runs with the package: go test -race ./e2e/. The full version (500
// tasks, 3 coordinator kills, 3 executor kills, 1 partition):
//
//	TASKER_CHAOS_FULL=1 go test -race -count=1 -timeout 30m -run 'TestChaos$' -v ./e2e/
//
// Knobs (environment): TASKER_CHAOS_SEED replays a seed (default: the
// time; always printed), TASKER_CHAOS_TASKS sets the number of tasks,
// TASKER_CHAOS_COORDINATOR_KILLS and TASKER_CHAOS_EXECUTOR_KILLS the kills.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// chaosConfig sizes a chaos run.
type chaosConfig struct {
	seed             int64
	full             bool
	tasks            int
	coordinatorKills int
	executorKills    int
	partitions       int
	randomTemplates  int
	// window is the time over which tasks are submitted at a steady pace;
	// every fault happens inside it, while tasks run.
	window time.Duration
	// settle bounds the wait, after the last submission, for every task to
	// reach a terminal state.
	settle time.Duration
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	t.Helper()
	cfg := chaosConfig{
		seed: time.Now().UnixNano(), tasks: 100, coordinatorKills: 1, executorKills: 1, partitions: 1,
		randomTemplates: 10, settle: 3 * time.Minute,
	}
	if v := os.Getenv("TASKER_CHAOS_FULL"); v != "" {
		full, err := strconv.ParseBool(v)
		require.NoError(t, err, "TASKER_CHAOS_FULL")
		if full {
			cfg.full = true
			cfg.tasks, cfg.coordinatorKills, cfg.executorKills = 500, 3, 3
			cfg.randomTemplates, cfg.settle = 25, 10*time.Minute
		}
	}
	envInt := func(name string, dst *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			require.NoError(t, err, name)
			require.GreaterOrEqual(t, n, 0, name)
			*dst = n
		}
	}
	envInt("TASKER_CHAOS_TASKS", &cfg.tasks)
	envInt("TASKER_CHAOS_COORDINATOR_KILLS", &cfg.coordinatorKills)
	envInt("TASKER_CHAOS_EXECUTOR_KILLS", &cfg.executorKills)
	require.Positive(t, cfg.tasks, "TASKER_CHAOS_TASKS")
	if v := os.Getenv("TASKER_CHAOS_SEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "TASKER_CHAOS_SEED")
		cfg.seed = seed
	}
	cfg.window = max(10*time.Second, time.Duration(cfg.tasks)*100*time.Millisecond)
	return cfg
}

// faultKind is one kind of injected failure.
type faultKind int

const (
	killCoordinator faultKind = iota
	killExecutor
	partitionExecutor
)

// fault is one planned failure, at an offset from the first submission.
type fault struct {
	kind     faultKind
	at       time.Duration
	executor int           // killExecutor: index into the executors
	hold     time.Duration // partitionExecutor: how long the partition lasts
}

func (f fault) String() string {
	switch f.kind {
	case killCoordinator:
		return fmt.Sprintf("%s kill -9 coordinator", f.at.Round(time.Millisecond))
	case killExecutor:
		return fmt.Sprintf("%s kill -9 exec-%d", f.at.Round(time.Millisecond), f.executor+1)
	default:
		return fmt.Sprintf("%s partition exec-3 for %s", f.at.Round(time.Millisecond), f.hold.Round(time.Millisecond))
	}
}

// chaosPlan is everything the seed decides, drawn up front from one
// generator so a seed replays the same templates, tasks and faults.
type chaosPlan struct {
	templates []*template.Template
	tasks     []int // template index of each task
	faults    []fault
}

func newChaosPlan(rng *rand.Rand, cfg chaosConfig) (*chaosPlan, error) {
	shapes, err := chaosShapes()
	if err != nil {
		return nil, err
	}
	p := &chaosPlan{templates: shapes}
	for k := range cfg.randomTemplates {
		p.templates = append(p.templates, randomTemplate(rng, k))
	}
	p.tasks = make([]int, cfg.tasks)
	for i := range p.tasks {
		p.tasks[i] = rng.IntN(len(p.templates))
	}
	var kinds []faultKind
	for range cfg.coordinatorKills {
		kinds = append(kinds, killCoordinator)
	}
	for range cfg.executorKills {
		kinds = append(kinds, killExecutor)
	}
	for range cfg.partitions {
		kinds = append(kinds, partitionExecutor)
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	offsets := make([]time.Duration, len(kinds))
	for i := range offsets {
		// Inside the middle of the window, so tasks are running on both
		// sides of every fault.
		offsets[i] = cfg.window/10 + time.Duration(rng.Int64N(int64(cfg.window*8/10)))
	}
	slices.Sort(offsets)
	interval := cfg.window / time.Duration(cfg.tasks)
	for i, kind := range kinds {
		f := fault{kind: kind, at: offsets[i]}
		switch kind {
		case killCoordinator:
			// Just after a submission is sent, so that create is likely
			// in flight and its answer lost: the retry must find the task
			// by its key.
			f.at = f.at.Truncate(interval) + 3*time.Millisecond
		case killExecutor:
			f.executor = rng.IntN(3)
		case partitionExecutor:
			f.hold = 2*time.Second + time.Duration(rng.Int64N(int64(time.Second)))
		}
		p.faults = append(p.faults, f)
	}
	return p, nil
}

// chaosExecutor is one executor identity across its restarts.
type chaosExecutor struct {
	id   string
	args []string
	proc *process
	runs int
}

// chaosCluster is the coordinator, the executors and the proxy in front of
// executor 3, restartable under the same addresses and files.
type chaosCluster struct {
	t         *testing.T
	db        string // a SQLite file or a postgres:// URL
	schema    string // the PostgreSQL schema, when db is a URL
	coordArgs []string
	coord     *process
	coordRuns int
	execs     []*chaosExecutor
	proxy     *proxy
	client    coordinatorv1.CoordinatorServiceClient
}

func startChaosCluster(t *testing.T, db, schema string) *chaosCluster {
	t.Helper()
	coordAddr := freeAddr(t)
	c := &chaosCluster{t: t, db: db, schema: schema}
	// A fixed id keeps the coordinator's lease across its restarts, so it
	// takes its tasks back at once instead of after the lease expires.
	c.coordArgs = []string{"coordinator", "--listen", coordAddr, "--db", c.db, "--id", "chaos", "--executor-grace", "1s", "--log-level", "info"}
	c.startCoordinator()

	// Executor 3 advertises the proxy, so the coordinator's dial (and the
	// Execute stream on it) crosses the proxy.
	listens := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	c.proxy = startProxy(t, listens[2])
	for i, listen := range listens {
		ex := &chaosExecutor{id: fmt.Sprintf("exec-%d", i+1)}
		ex.args = []string{"executor", "--listen", listen, "--coordinator", coordAddr, "--id", ex.id, "--capacity", "8", "--log-level", "info"}
		if i == 2 {
			ex.args = append(ex.args, "--advertise", c.proxy.addr())
		}
		c.execs = append(c.execs, ex)
		c.startExecutor(ex)
	}

	// The client retries connecting quickly: the coordinator comes back
	// within a second or two, and gRPC's default backoff would wait longer.
	conn, err := grpc.NewClient(coordAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c.client = coordinatorv1.NewCoordinatorServiceClient(conn)

	require.Eventually(t, func() bool {
		return c.connectedExecutors(context.Background()) == len(c.execs)
	}, 60*time.Second, 100*time.Millisecond, "executors did not connect")
	return c
}

func (c *chaosCluster) startCoordinator() {
	c.coordRuns++
	c.coord = start(c.t, fmt.Sprintf("coordinator-run%d", c.coordRuns), c.coordArgs...)
}

func (c *chaosCluster) startExecutor(ex *chaosExecutor) {
	ex.runs++
	ex.proc = start(c.t, fmt.Sprintf("%s-run%d", ex.id, ex.runs), ex.args...)
}

// awaitCoordinator waits (up to 30s) until the coordinator answers an RPC
// and returns when it did.
func (c *chaosCluster) awaitCoordinator(ctx context.Context) time.Time {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.client.ListExecutors(rctx, &coordinatorv1.ListExecutorsRequest{})
		cancel()
		if err == nil {
			return time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Errorf("coordinator did not answer within 30s of its restart")
	return time.Now()
}

func (c *chaosCluster) connectedExecutors(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{})
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range resp.GetExecutors() {
		if e.GetConnected() {
			n++
		}
	}
	return n
}

func (c *chaosCluster) registerTemplates(ctx context.Context, tmpls []*template.Template) {
	c.t.Helper()
	for _, tmpl := range tmpls {
		pb, err := templatepb.ToProto(tmpl)
		require.NoError(c.t, err, planName(tmpl))
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = c.client.RegisterTemplate(rctx, &coordinatorv1.RegisterTemplateRequest{Template: pb})
		cancel()
		require.NoError(c.t, err, planName(tmpl))
	}
}

// faultRecord is what the faults actually did.
type faultRecord struct {
	coordinatorKills []time.Time // when each SIGKILL was sent
	executorKills    int
	partitions       int
	dropped          int // proxied connections a partition cut
}

// runFaults carries out the planned faults in order, each at its offset
// from began (or at once if the previous one overran). It runs on the test
// goroutine, because restarting a process may fail the test.
func (c *chaosCluster) runFaults(ctx context.Context, began time.Time, faults []fault) faultRecord {
	var rec faultRecord
	for _, f := range faults {
		select {
		case <-ctx.Done():
			return rec
		case <-time.After(time.Until(began.Add(f.at))):
		}
		c.t.Logf("fault at %s (planned %s)", time.Since(began).Round(time.Millisecond), f)
		switch f.kind {
		case killCoordinator:
			killed := time.Now()
			rec.coordinatorKills = append(rec.coordinatorKills, killed)
			c.coord.kill()
			c.startCoordinator()
			c.t.Logf("coordinator serving again %s after the kill", c.awaitCoordinator(ctx).Sub(killed).Round(time.Millisecond))
		case killExecutor:
			ex := c.execs[f.executor]
			ex.proc.kill()
			c.startExecutor(ex)
			rec.executorKills++
		case partitionExecutor:
			// Cut a live path, not an idle one: wait for the coordinator's
			// stream to executor 3 to be up (it may be re-registering after
			// an earlier fault).
			deadline := time.Now().Add(15 * time.Second)
			for c.proxy.active() == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if c.proxy.active() == 0 {
				c.t.Errorf("no connection through the proxy to exec-3 for 15s before the partition: the coordinator is not talking to it")
			}
			rec.dropped += c.proxy.partition()
			time.Sleep(f.hold)
			c.proxy.heal()
			rec.partitions++
		}
	}
	return rec
}

// submission is the outcome of creating one task.
type submission struct {
	key     string
	id      string
	calls   int // CreateTask calls made, 1 if the first succeeded
	created bool
	err     error
}

// submitAll creates the planned tasks at a steady pace over window, each
// with its own idempotency key, retrying every create until it succeeds:
// across a coordinator restart a retry may find the task the lost call
// created, which the key turns into the same task rather than a second one.
func (c *chaosCluster) submitAll(ctx context.Context, seed int64, plan *chaosPlan, began time.Time, window time.Duration) []submission {
	subs := make([]submission, len(plan.tasks))
	done := make(chan struct{}, len(plan.tasks))
	interval := window / time.Duration(len(plan.tasks))
	for i, ti := range plan.tasks {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(began.Add(time.Duration(i) * interval))):
		}
		tmpl := plan.templates[ti]
		key := fmt.Sprintf("chaos-%d-%05d", seed, i)
		subs[i].key = key
		go func() {
			defer func() { done <- struct{}{} }()
			req, err := createRequest(tmpl, key, seed, i)
			if err != nil {
				subs[i].err = err
				return
			}
			subs[i].id, subs[i].created, subs[i].calls, subs[i].err = createWithRetry(ctx, c.client, req)
			if subs[i].err == nil && waitsForSignal(tmpl) {
				subs[i].err = signalWithRetry(ctx, c.client, subs[i].id, i)
			}
		}()
	}
	for range plan.tasks {
		<-done
	}
	return subs
}

func createRequest(tmpl *template.Template, key string, seed int64, n int) (*coordinatorv1.CreateTaskRequest, error) {
	taskCtx, err := structpb.NewStruct(map[string]any{"seed": fmt.Sprint(seed), "n": n})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.CreateTaskRequest{Namespace: tmpl.Namespace, Name: tmpl.Name, Context: taskCtx, IdempotencyKey: key}, nil
}

// recreateAll sends every create again once the run is over: each must
// return the task first created for its key, as not created. It returns a
// description of each mismatch.
func (c *chaosCluster) recreateAll(ctx context.Context, seed int64, plan *chaosPlan, subs []submission) []string {
	var bad []string
	for i, s := range subs {
		req, err := createRequest(plan.templates[plan.tasks[i]], s.key, seed, i)
		if err != nil {
			return append(bad, err.Error())
		}
		id, created, _, err := createWithRetry(ctx, c.client, req)
		switch {
		case err != nil:
			bad = append(bad, err.Error())
		case id != s.id || created:
			bad = append(bad, fmt.Sprintf("key %s: first create gave %s, repeat gave %s (created=%v)", s.key, s.id, id, created))
		}
	}
	return bad
}

func createWithRetry(ctx context.Context, client coordinatorv1.CoordinatorServiceClient, req *coordinatorv1.CreateTaskRequest) (id string, created bool, calls int, err error) {
	for {
		calls++
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := client.CreateTask(cctx, req)
		cancel()
		if err == nil {
			return resp.GetTask().GetId(), resp.GetCreated(), calls, nil
		}
		if status.Code(err) == codes.InvalidArgument {
			return "", false, calls, fmt.Errorf("create %s: %w", req.GetIdempotencyKey(), err)
		}
		select {
		case <-ctx.Done():
			return "", false, calls, fmt.Errorf("create %s: gave up after %d calls: %w", req.GetIdempotencyKey(), calls, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// signalWithRetry sends chaosSignal to a task until the coordinator has
// it: stored for the wait step, or consumed by it. A call that timed out
// may have been applied, so a retry refused with FailedPrecondition (no
// step of the task can take another) means the first one landed, as does
// one refused because the wait was skipped on a branch not taken.
func signalWithRetry(ctx context.Context, client coordinatorv1.CoordinatorServiceClient, id string, n int) error {
	payload := fmt.Sprintf(`{"n":%d}`, n)
	for calls := 1; ; calls++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := client.SignalTask(cctx, &coordinatorv1.SignalTaskRequest{Id: id, Signal: chaosSignal, Payload: payload})
		cancel()
		switch status.Code(err) {
		case codes.OK, codes.FailedPrecondition:
			return nil
		case codes.InvalidArgument, codes.NotFound:
			return fmt.Errorf("signal task %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("signal task %s: gave up after %d calls: %w", id, calls, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// taskStates lists every stored task's state through the API.
func (c *chaosCluster) taskStates(ctx context.Context) (map[string]coordinatorv1.State, error) {
	states := map[string]coordinatorv1.State{}
	token := ""
	for {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.client.ListTasks(lctx, &coordinatorv1.ListTasksRequest{PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, task := range resp.GetTasks() {
			states[task.GetId()] = task.GetState()
		}
		if token = resp.GetNextPageToken(); token == "" {
			return states, nil
		}
	}
}

// waitTerminal waits until every submitted task is terminal, or until
// bound; it reports how many were still unfinished at the end.
func (c *chaosCluster) waitTerminal(ctx context.Context, subs []submission, bound time.Duration) (unfinished int) {
	deadline := time.Now().Add(bound)
	submitted := make(map[string]bool, len(subs))
	for _, s := range subs {
		submitted[s.id] = true
	}
	lastLog := time.Now()
	unfinished = len(subs)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		states, err := c.taskStates(ctx)
		if err == nil {
			unfinished = 0
			for _, s := range subs {
				if st, ok := states[s.id]; !ok || !statepb.Terminal(st) {
					unfinished++
				}
			}
			for id, st := range states {
				if !submitted[id] && !statepb.Terminal(st) {
					unfinished++ // stored, but not as any create's answer
				}
			}
			if unfinished == 0 {
				return 0
			}
		}
		if time.Since(lastLog) > 10*time.Second {
			c.t.Logf("waiting for %d of %d tasks to finish (list err: %v)", unfinished, len(subs), err)
			lastLog = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
	return unfinished
}

// dumpStuck logs the unfinished tasks with their steps and last
// transitions, and what the coordinator thinks of its executors.
func (c *chaosCluster) dumpStuck(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if resp, err := c.client.ListExecutors(ctx, &coordinatorv1.ListExecutorsRequest{}); err == nil {
		for _, e := range resp.GetExecutors() {
			c.t.Logf("executor %s address=%s connected=%v in_flight=%d/%d", e.GetId(), e.GetAddress(), e.GetConnected(), e.GetInFlight(), e.GetCapacity())
		}
	} else {
		c.t.Logf("list executors: %v", err)
	}
	for _, st := range []coordinatorv1.State{coordinatorv1.State_STATE_PENDING, coordinatorv1.State_STATE_IN_PROGRESS} {
		resp, err := c.client.ListTasks(ctx, &coordinatorv1.ListTasksRequest{State: st, PageSize: 10, Full: true})
		if err != nil {
			c.t.Logf("list %s tasks: %v", st, err)
			continue
		}
		for _, task := range resp.GetTasks() {
			c.t.Logf("stuck task %s %s/%s state=%s key=%s", task.GetId(), task.GetNamespace(), task.GetName(), task.GetState(), task.GetIdempotencyKey())
			for _, s := range task.GetSteps() {
				if s.GetState() == coordinatorv1.State_STATE_COMPLETE {
					continue
				}
				c.t.Logf("  step %s (%s) state=%s attempts=%d/%d depends_on=%v", s.GetName(), s.GetHandler(), s.GetState(), s.GetAttempts(), s.GetMaxAttempts(), s.GetDependsOn())
				trs := s.GetTransitions()
				for _, tr := range trs[max(0, len(trs)-4):] {
					c.t.Logf("    seq=%d %s %s->%s attempt=%d %q", tr.GetSeq(), tr.GetAt().AsTime().Format(time.StampMilli), tr.GetFromState(), tr.GetToState(), tr.GetAttempt(), tr.GetReason())
				}
			}
		}
	}
}

// stopAll stops the executors (at once, so each can hand over what it still
// holds while the coordinator is up), then the coordinator, leaving the
// store file closed and quiet for the audit.
func (c *chaosCluster) stopAll() {
	done := make(chan struct{}, len(c.execs))
	for _, ex := range c.execs {
		go func() {
			ex.proc.stop(15 * time.Second)
			done <- struct{}{}
		}()
	}
	for range c.execs {
		<-done
	}
	c.coord.stop(20 * time.Second)
}

func TestChaos(t *testing.T) {
	t.Parallel()
	runChaos(t, filepath.Join(t.TempDir(), "tasker.db"), "")
}

// TestChaosPostgres is the same suite with the coordinator on PostgreSQL
// (TASKER_TEST_POSTGRES), in a schema of its own.
func TestChaosPostgres(t *testing.T) {
	base := os.Getenv(envTestPostgres)
	if base == "" {
		t.Skipf("set %s to a postgres:// URL to run the chaos suite on PostgreSQL", envTestPostgres)
	}
	schema := fmt.Sprintf("tasker_chaos_%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	multiCreateSchema(ctx, t, base, schema)
	db, err := withSearchPath(base, schema)
	require.NoError(t, err)
	runChaos(t, db, schema)
}

func runChaos(t *testing.T, db, schema string) {
	cfg := chaosConfigFromEnv(t)
	t.Logf("chaos plan: seed=%d full=%v tasks=%d coordinator_kills=%d executor_kills=%d partitions=%d window=%s (replay with TASKER_CHAOS_SEED=%d)",
		cfg.seed, cfg.full, cfg.tasks, cfg.coordinatorKills, cfg.executorKills, cfg.partitions, cfg.window, cfg.seed)
	rng := rand.New(rand.NewPCG(uint64(cfg.seed), 0x7a5c3e))
	plan, err := newChaosPlan(rng, cfg)
	require.NoError(t, err)
	for _, tmpl := range plan.templates[5:] {
		t.Logf("template %s", describeTemplate(tmpl))
	}
	for _, f := range plan.faults {
		t.Logf("planned fault: %s", f)
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.window+cfg.settle+2*time.Minute)
	defer cancel()
	c := startChaosCluster(t, db, schema)
	c.registerTemplates(ctx, plan.templates)

	began := time.Now()
	submitted := make(chan []submission, 1)
	go func() { submitted <- c.submitAll(ctx, cfg.seed, plan, began, cfg.window) }()
	rec := c.runFaults(ctx, began, plan.faults)
	subs := <-submitted
	createRetries := 0
	for _, s := range subs {
		require.NoError(t, s.err)
		createRetries += s.calls - 1
	}
	t.Logf("all %d tasks submitted after %s (%d create retries)", len(subs), time.Since(began).Round(time.Millisecond), createRetries)

	if n := c.waitTerminal(ctx, subs, cfg.settle); n > 0 {
		t.Errorf("%d tasks did not finish within %s of the last submission (seed %d)", n, cfg.settle, cfg.seed)
		c.dumpStuck(ctx)
	}
	elapsed := time.Since(began)
	recreated := c.recreateAll(ctx, cfg.seed, plan, subs)
	c.stopAll()

	a, err := auditStore(ctx, c.db, c.schema, subs, rec.coordinatorKills)
	require.NoError(t, err)
	overhead := 0.0
	if ran := a.steps - a.skippedSteps; ran > 0 {
		overhead = float64(a.dispatches) / float64(ran) // skipped steps are never dispatched
	}
	storeKind := "sqlite"
	if schema != "" {
		storeKind = "postgres"
	}
	t.Logf("chaos: store=%s seed=%d tasks=%d steps=%d skipped=%d instance_dispatches=%d coordinator_kills=%d executor_kills=%d partitions=%d lost=%d double_completions=%d dispatches=%d dispatch_overhead=%.2f max_recovery=%s interrupted_tasks=%d duplicates=%d lost_attempts=%d violations=%d create_retries=%d elapsed=%s",
		storeKind, cfg.seed, len(subs), a.steps, a.skippedSteps, a.instances, len(rec.coordinatorKills), rec.executorKills, rec.partitions, a.lost, a.doubleCompletions,
		a.dispatches, overhead, a.maxRecovery.Round(10*time.Millisecond), a.interrupted, a.duplicates, a.lostAttempts, a.violationCount, createRetries,
		elapsed.Round(100*time.Millisecond))

	require.Equal(t, cfg.coordinatorKills, len(rec.coordinatorKills), "coordinator kills carried out")
	require.Equal(t, cfg.executorKills, rec.executorKills, "executor kills carried out")
	require.Equal(t, cfg.partitions, rec.partitions, "partitions carried out")
	if cfg.partitions > 0 {
		require.Positive(t, rec.dropped, "a partition cut a live connection to exec-3")
	}
	require.Empty(t, recreated, "repeated creates must return the original tasks (seed %d)", cfg.seed)
	require.Zero(t, a.lost, "tasks lost (seed %d)", cfg.seed)
	require.Zero(t, a.duplicates, "tasks stored twice (seed %d)", cfg.seed)
	require.Zero(t, a.doubleCompletions, "steps completed more than once (seed %d)", cfg.seed)
	require.Zero(t, a.violationCount, "violations (seed %d), first ones:\n%s", cfg.seed, strings.Join(a.violations, "\n"))
	require.Equal(t, len(subs), a.tasks, "stored tasks")
}
