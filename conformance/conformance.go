// Package conformance checks that an executor, written in any language,
// speaks tasker.executor.v1 as docs/executor-protocol.md says. Run plays
// the coordinator's side over a real gRPC connection to the executor's
// address and runs one case per protocol rule (Describe, result echo,
// failures, admission, capacity, cancel, heartbeats, redelivery after a
// broken stream, message sizes, trace context, shutdown), each with a
// bounded time. The executor needs only to host the well-known test
// handlers of docs/conformance.md (the Go SDK ships them in
// executor/conformance).
//
// `tasker executor-check ADDR` is the command-line front of Run.
package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// Status is the outcome of one case.
type Status string

// The three outcomes.
const (
	StatusPass Status = "pass"
	StatusFail Status = "fail"
	StatusSkip Status = "skip"
)

// Result is the outcome of one case, as printed by executor-check.
type Result struct {
	// ID names the case; docs/conformance.md has a section per id.
	ID string `json:"id"`
	// Title says what the case checks, in a few words.
	Title string `json:"title"`
	// Rule is the section of docs/executor-protocol.md the case checks.
	Rule   string `json:"rule"`
	Status Status `json:"status"`
	// Sent and Got summarize what the kit sent and what came back.
	Sent string `json:"sent"`
	Got  string `json:"got"`
	// Problems lists every way the executor broke the rule; empty on pass.
	// For a skipped case it holds the reason.
	Problems []string      `json:"problems"`
	Duration time.Duration `json:"-"`
}

// Report is the outcome of a whole run.
type Report struct {
	Address    string   `json:"address"`
	ExecutorID string   `json:"executor_id"`
	Language   string   `json:"language"`
	Results    []Result `json:"results"`
}

// Count returns how many cases ended with status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Result returns the result of the case id, or false when it did not run.
func (r *Report) Result(id string) (Result, bool) {
	for _, res := range r.Results {
		if res.ID == id {
			return res, true
		}
	}
	return Result{}, false
}

// Defaults of Options.
const (
	// DefaultHeartbeatInterval is the protocol's heartbeat period.
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultCaseTimeout bounds the wait for each expected message; long
	// enough for a loaded CI machine, short enough that a hung executor
	// fails quickly.
	DefaultCaseTimeout = 10 * time.Second
	// maxRecvBytes is what the kit accepts in one message, as the
	// coordinator does (64 MiB): the large-messages case sends results
	// near the coordinator's 4 MiB default limit.
	maxRecvBytes = 64 << 20
)

// Options configure a run.
type Options struct {
	// Address is the executor's host:port.
	Address string
	// DialOptions connect to the executor (transport credentials, a
	// bearer secret). Default: plaintext.
	DialOptions []grpc.DialOption
	// Handlers are further handler names Describe must list besides the
	// conformance ones.
	Handlers []string
	// HeartbeatInterval is the period the executor sends heartbeats at;
	// the protocol's is 5 s. Tests of fast executors set it lower.
	HeartbeatInterval time.Duration
	// CaseTimeout bounds each wait for an expected message.
	CaseTimeout time.Duration
	// Coordinator, when set, serves the kit's stand-in coordinator
	// (RegisterExecutor, ReportStepResult) on this listener, for an
	// executor started with it as its coordinator: results it redelivers
	// through ReportStepResult then count. Run closes it.
	Coordinator net.Listener
	// CoordinatorServerOptions are the stand-in coordinator's server
	// options (TLS).
	CoordinatorServerOptions []grpc.ServerOption
	// Shutdown, when set, makes the executor begin a graceful shutdown
	// (e.g. sends it SIGTERM) and returns; the shutdown case, which runs
	// last, is skipped without it.
	Shutdown func(ctx context.Context) error
	// Cases, when not empty, runs only the cases with these ids (describe
	// always runs: every case needs its answer).
	Cases []string
	// OnResult, when set, is called with each result as its case ends.
	OnResult func(Result)
}

// ErrInvalidOptions is wrapped by Run for options it cannot work with.
var ErrInvalidOptions = errors.New("invalid conformance options")

// kit is one run's shared state.
type kit struct {
	opts   Options
	client executorv1.ExecutorServiceClient
	coord  *coordinatorStub
	// runID makes step ids unique to this run, so results of an earlier
	// run redelivered now are never mistaken for this run's.
	runID string
	// coordinatorID names the kit on its streams and in its stub's
	// RegisterExecutor answers.
	coordinatorID string
	seq           atomic.Int64
	// desc is Describe's answer, set by the describe case.
	desc *executorv1.DescribeResponse
}

// Run runs the cases against opts.Address and reports each. The error is
// for a run that could not take place (bad options, no connection can be
// set up); an executor that breaks rules gives failed results, not an
// error.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Address == "" {
		return nil, fmt.Errorf("%w: address is empty", ErrInvalidOptions)
	}
	if opts.HeartbeatInterval < 0 || opts.CaseTimeout < 0 {
		return nil, fmt.Errorf("%w: heartbeat interval %s and case timeout %s must not be negative", ErrInvalidOptions, opts.HeartbeatInterval, opts.CaseTimeout)
	}
	for _, id := range opts.Cases {
		if !slices.ContainsFunc(cases, func(c caseDef) bool { return c.id == id }) {
			return nil, fmt.Errorf("%w: unknown case %q (cases: %s)", ErrInvalidOptions, id, caseIDs())
		}
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.CaseTimeout == 0 {
		opts.CaseTimeout = DefaultCaseTimeout
	}
	dial := opts.DialOptions
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	dial = append(slices.Clip(dial), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvBytes), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	conn, err := grpc.NewClient(opts.Address, dial...)
	if err != nil {
		return nil, fmt.Errorf("dial executor %s: %w", opts.Address, err)
	}
	defer func() { _ = conn.Close() }()
	k := &kit{opts: opts, client: executorv1.NewExecutorServiceClient(conn), runID: randomHex(4)}
	k.coordinatorID = "executor-check-" + k.runID
	if opts.Coordinator != nil {
		k.coord = startCoordinatorStub(opts.Coordinator, k.coordinatorID, opts.CoordinatorServerOptions...)
		defer k.coord.stop()
	}

	report := &Report{Address: opts.Address}
	for _, c := range cases {
		if len(opts.Cases) > 0 && c.id != "describe" && !slices.Contains(opts.Cases, c.id) {
			continue
		}
		res := k.runCase(ctx, c)
		if c.id == "describe" && k.desc != nil {
			report.ExecutorID, report.Language = k.desc.GetExecutorId(), k.desc.GetLanguage()
		}
		report.Results = append(report.Results, res)
		if opts.OnResult != nil {
			opts.OnResult(res)
		}
		if ctx.Err() != nil {
			return report, fmt.Errorf("conformance run interrupted: %w", context.Cause(ctx))
		}
	}
	return report, nil
}

// runCase runs one case under its time budget.
func (k *kit) runCase(ctx context.Context, c caseDef) (res Result) {
	res = Result{ID: c.id, Title: c.title, Rule: c.rule}
	start := time.Now()
	defer func() { res.Duration = time.Since(start) }()
	if c.id != "describe" && k.desc == nil {
		res.Status, res.Problems = StatusSkip, []string{"Describe did not answer, so nothing else can run"}
		return res
	}
	cctx, cancel := context.WithTimeout(ctx, c.budget(k.opts))
	defer cancel()
	r := &caseRun{}
	c.run(cctx, k, r)
	res.Sent, res.Got, res.Problems = r.sent, r.got, r.problems
	switch {
	case r.skipped != "":
		res.Status, res.Problems = StatusSkip, []string{r.skipped}
	case len(r.problems) > 0:
		res.Status = StatusFail
	default:
		res.Status = StatusPass
	}
	if res.Problems == nil {
		res.Problems = []string{}
	}
	return res
}

// caseRun collects what one case did and found.
type caseRun struct {
	sent, got string
	problems  []string
	skipped   string
}

func (r *caseRun) failf(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func (r *caseRun) fail(problems ...string) {
	r.problems = append(r.problems, problems...)
}

func (r *caseRun) sentf(format string, args ...any) { r.sent = fmt.Sprintf(format, args...) }
func (r *caseRun) gotf(format string, args ...any)  { r.got = fmt.Sprintf(format, args...) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
