package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// caseDef is one conformance case: its id (docs/conformance.md has a
// section per id), the protocol section it checks, its time budget and
// its body.
type caseDef struct {
	id, title string
	// rule is a section of docs/executor-protocol.md.
	rule   string
	budget func(Options) time.Duration
	run    func(ctx context.Context, k *kit, r *caseRun)
}

// protocolDoc prefixes rule anchors.
const protocolDoc = "docs/executor-protocol.md#"

// Durations the cases use for their sleeps: long enough to overlap on a
// loaded machine, short enough to keep a run to seconds.
const (
	shortSleep = 300 * time.Millisecond
	// openWithin bounds "at once" for the first heartbeat of a stream.
	openWithin = 2 * time.Second
	// capacityCap is the largest capacity the capacity case saturates.
	capacityCap = 256
	// contextBytes and parentBytes size the large-messages case's
	// request: the coordinator's default context limit, and a parent's
	// results that keep the whole ExecuteStep under gRPC's default 4 MiB
	// receive limit.
	contextBytes = 1 << 20
	parentBytes  = 2 << 20
	// resultBytes is the coordinator's default --max-result-bytes.
	resultBytes = 4 << 20
)

// cases run in this order: describe first (the others need its answer),
// shutdown last (nothing runs after it), and capacity before the cases
// that may leave a misbehaving handler running.
var cases = []caseDef{
	{id: "describe", title: "Describe answers id, handlers, capacity, language, protocol version",
		rule: protocolDoc + "describe-coordinator--executor-unary", budget: timeout(1), run: runDescribe},
	{id: "heartbeat-open", title: "a heartbeat arrives at once when a stream opens, listing what runs on other streams",
		rule: protocolDoc + "opening", budget: timeout(3), run: runHeartbeatOpen},
	{id: "echo", title: "a step runs; its result echoes task, step, attempt, executor id and the request",
		rule: protocolDoc + "executor--coordinator", budget: timeout(2), run: runEcho},
	{id: "failure", title: "a handler error comes back with message, class, permanence and backoff",
		rule: protocolDoc + "stepfailure", budget: timeout(2), run: runFailure},
	{id: "unknown-handler", title: "an unknown handler is refused at once, permanently",
		rule: protocolDoc + "coordinator--executor", budget: timeout(2), run: runUnknownHandler},
	{id: "duplicate", title: "the same attempt sent twice runs once and answers once",
		rule: protocolDoc + "coordinator--executor", budget: timeout(2), run: runDuplicate},
	{id: "deadline", title: "a passed deadline is refused; a deadline reached while running stops the handler",
		rule: protocolDoc + "coordinator--executor", budget: timeout(2), run: runDeadline},
	{id: "trace-context", title: "the handler sees the step's trace context",
		rule: protocolDoc + "coordinator--executor", budget: timeout(2), run: runTraceContext},
	{id: "large-messages", title: "a large context and parent result arrive intact; a result near the limit goes back",
		rule: protocolDoc + "success", budget: timeout(3), run: runLargeMessages},
	{id: "capacity", title: "capacity+2 steps at once: never more than capacity run; the rest ExecutorOverCapacity",
		rule: protocolDoc + "coordinator--executor", budget: timeout(3), run: runCapacity},
	{id: "half-close", title: "after the coordinator half-closes, results still come, then the stream ends cleanly",
		rule: protocolDoc + "ending", budget: timeout(2), run: runHalfClose},
	{id: "cancel", title: "CancelStep stops the handler and still yields exactly one result",
		rule: protocolDoc + "coordinator--executor", budget: timeout(2), run: runCancel},
	{id: "heartbeat-cadence", title: "heartbeats keep coming at the cadence and list running attempts",
		rule: protocolDoc + "executor--coordinator", budget: func(o Options) time.Duration { return 2*o.HeartbeatInterval + 2*o.CaseTimeout }, run: runHeartbeatCadence},
	{id: "redelivery", title: "a result finished after its stream broke arrives once, on the next stream or ReportStepResult",
		rule: protocolDoc + "redelivery", budget: timeout(3), run: runRedelivery},
	{id: "shutdown", title: "graceful shutdown delivers the running step's result and ends the stream cleanly",
		rule: protocolDoc + "shutdown", budget: timeout(4), run: runShutdown},
}

// CaseIDs lists every case id in run order.
func CaseIDs() []string {
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = c.id
	}
	return ids
}

func caseIDs() string { return strings.Join(CaseIDs(), ", ") }

// timeout is a budget of n case timeouts.
func timeout(n int) func(Options) time.Duration {
	return func(o Options) time.Duration { return time.Duration(n) * o.CaseTimeout }
}

// step builds an ExecuteStep with ids unique to this run; params become
// its handler_config.
func (k *kit) step(handler string, params any) *executorv1.ExecuteStep {
	n := k.seq.Add(1)
	taskID := "task-" + k.runID
	stepID := fmt.Sprintf("step-%s-%d", k.runID, n)
	cfg, err := json.Marshal(params)
	if err != nil {
		// The kit's own parameters are plain maps; this cannot happen.
		panic(fmt.Sprintf("encode step params: %v", err))
	}
	return &executorv1.ExecuteStep{
		TaskId: taskID, StepId: stepID, StepName: fmt.Sprintf("check_%d", n), Handler: handler, Attempt: 1,
		HandlerConfig: cfg, Context: []byte(`{"kit":"tasker executor-check"}`),
		Namespace: "conformance", TemplateName: "executor_check", TemplateVersion: "1.0.0",
		IdempotencyKey: taskID + "/" + stepID + "/0",
	}
}

func sleepParams(d time.Duration) map[string]any { return map[string]any{"ms": d.Milliseconds()} }

// open opens a stream for a case, recording the failure when it cannot.
func (k *kit) open(ctx context.Context, r *caseRun) *stream {
	s, err := openStream(ctx, k.client, k.coordinatorID)
	if err != nil {
		r.fail(err.Error())
		return nil
	}
	return s
}

// send sends steps on s, recording a failure when the stream is broken.
func (k *kit) send(r *caseRun, s *stream, steps ...*executorv1.ExecuteStep) bool {
	for _, st := range steps {
		if err := s.execute(st); err != nil {
			r.fail(err.Error())
			return false
		}
	}
	return true
}

// sendWithin sends steps on s keeping at most Describe's capacity in
// flight, as a coordinator must: a step beyond it is sent once the result
// of the step capacity places before it came. It reports false after
// recording why it could not.
func (k *kit) sendWithin(ctx context.Context, r *caseRun, s *stream, steps ...*executorv1.ExecuteStep) bool {
	capacity := max(int(k.desc.GetCapacity()), 1)
	for i, st := range steps {
		if i >= capacity && k.await(ctx, r, s, steps[i-capacity]) == nil {
			return false
		}
		if !k.send(r, s, st) {
			return false
		}
	}
	return true
}

// await waits for step's result on s, recording a failure when none
// came: for the case timeout beyond the time the step's handler is asked
// to take (a conformance.sleep's ms, up to its deadline).
func (k *kit) await(ctx context.Context, r *caseRun, s *stream, step *executorv1.ExecuteStep) *executorv1.StepResult {
	return k.awaitWithin(ctx, r, s, step, k.opts.CaseTimeout+expectedRun(step))
}

// awaitWithin is await with its own bound.
func (k *kit) awaitWithin(ctx context.Context, r *caseRun, s *stream, step *executorv1.ExecuteStep, d time.Duration) *executorv1.StepResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	res := s.result(ctx, step)
	if res == nil {
		msgs, end := s.snapshot()
		p := missingResult(msgs, step, time.Since(start).Round(time.Millisecond))
		if end != nil {
			p += "; the stream ended: " + describeErr(end)
		}
		r.fail(p)
	}
	return res
}

// expectedRun is how long step's handler is asked to run: a
// conformance.sleep's ms, cut short by its deadline; nothing for others.
func expectedRun(step *executorv1.ExecuteStep) time.Duration {
	if step.GetHandler() != HandlerSleep {
		return 0
	}
	var p struct {
		MS float64 `json:"ms"`
	}
	_ = json.Unmarshal(step.GetHandlerConfig(), &p)
	d := time.Duration(p.MS * float64(time.Millisecond))
	if dl := step.GetDeadline(); dl != nil {
		d = min(d, max(time.Until(dl.AsTime()), 0))
	}
	return d
}

// finish half-closes s, waits for the executor to end it, and checks
// that each of steps got exactly one result on it. The wait has its own
// bound, so a case that used up its budget still finds out.
func (k *kit) finish(r *caseRun, s *stream, steps ...*executorv1.ExecuteStep) {
	ctx, cancel := context.WithTimeout(context.Background(), k.opts.CaseTimeout)
	defer cancel()
	if err := s.closeAndDrain(ctx); err != nil {
		r.failf("%v (see case half-close)", err)
		return
	}
	msgs, _ := s.snapshot()
	for _, st := range steps {
		if p := countProblem(st, len(resultsFor(msgs, st))); p != "" {
			r.fail(p)
		}
	}
}

// barrier sends an echo step after others on s and waits for its result:
// a stream's requests are handled in order, so once it answers, every
// step sent before it was admitted. On an executor of capacity 1 the echo
// is refused as over capacity, which proves the same.
func (k *kit) barrier(ctx context.Context, r *caseRun, s *stream) *executorv1.ExecuteStep {
	b := k.step(HandlerEcho, map[string]any{})
	if !k.send(r, s, b) {
		return nil
	}
	res := k.await(ctx, r, s, b)
	if res == nil {
		return nil
	}
	if f := res.GetFailure(); f != nil && !(k.desc.GetCapacity() <= 1 && strings.EqualFold(f.GetErrorClass(), classOverCapacity)) {
		r.failf("the echo step sent to see the step before it admitted failed: %s", summarize(res))
		return nil
	}
	return b
}

func runDescribe(ctx context.Context, k *kit, r *caseRun) {
	r.sentf("Describe{coordinator_id: %q}", k.coordinatorID)
	d, err := k.client.Describe(ctx, &executorv1.DescribeRequest{CoordinatorId: k.coordinatorID})
	if err != nil {
		r.failf("Describe failed: %s", describeErr(err))
		return
	}
	k.desc = d
	r.gotf("executor_id %q, language %q, sdk_version %q, protocol_version %d, capacity %d, handlers [%s], capabilities [%s]",
		d.GetExecutorId(), d.GetLanguage(), d.GetSdkVersion(), d.GetProtocolVersion(), d.GetCapacity(),
		strings.Join(d.GetHandlers(), " "), strings.Join(d.GetCapabilities(), " "))
	want := append([]string{HandlerEcho, HandlerFail, HandlerSleep}, k.opts.Handlers...)
	r.fail(checkDescribe(d, want)...)
}

func runHeartbeatOpen(ctx context.Context, k *kit, r *caseRun) {
	long := 100 * k.opts.CaseTimeout
	st := k.step(HandlerSleep, sleepParams(long))
	r.sentf("open stream 1 and send nothing; then %s %s on it (and an echo, to see it admitted); open stream 2 and send nothing; then CancelStep", HandlerSleep, long)
	first := k.open(ctx, r)
	if first == nil {
		return
	}
	defer first.drop()
	hb1, after1 := k.firstHeartbeat(ctx, r, first, "stream 1")
	if hb1 == nil || !k.send(r, first, st) {
		return
	}
	b := k.barrier(ctx, r, first)
	if b == nil {
		return
	}
	second := k.open(ctx, r)
	if second == nil {
		return
	}
	defer second.drop()
	hb2, after2 := k.firstHeartbeat(ctx, r, second, "stream 2")
	if hb2 != nil {
		r.gotf("stream 1: a heartbeat after %s (%d running, capacity share %d); stream 2: a heartbeat after %s listing %d running",
			after1, len(hb1.GetRunning()), hb1.GetCapacity(), after2, len(hb2.GetRunning()))
		if !lists(hb2, st) {
			r.failf("the first heartbeat of stream 2 did not list attempt 1 of step %s, running since stream 1 sent it: list every attempt running in the process, whichever stream sent it", st.GetStepId())
		}
	}
	if err := first.cancelStep(st, "executor-check heartbeat-open case"); err != nil {
		r.fail(err.Error())
		return
	}
	if k.awaitWithin(ctx, r, first, st, k.opts.CaseTimeout) != nil {
		k.finish(r, first, st, b)
	}
}

// firstHeartbeat waits for the first heartbeat on a stream just opened,
// recording a failure when none comes at once or something but pending
// results precedes it; it returns the heartbeat and how long it took.
func (k *kit) firstHeartbeat(ctx context.Context, r *caseRun, s *stream, name string) (*executorv1.Heartbeat, time.Duration) {
	wctx, cancel := context.WithTimeout(ctx, openWithin)
	defer cancel()
	s.waitFor(wctx, func(msgs []received, _ error) bool { return len(heartbeats(msgs)) > 0 })
	msgs, end := s.snapshot()
	hbs := heartbeats(msgs)
	if len(hbs) == 0 {
		r.gotf("%s: %d messages, no heartbeat; stream end: %s", name, len(msgs), describeErr(end))
		r.failf("no heartbeat within %s of opening %s; send one at once, before the first interval", openWithin, name)
		return nil, 0
	}
	first := hbs[0]
	for _, m := range msgs {
		if m.msg == first.msg {
			break
		}
		if m.msg.GetStepResult() == nil {
			r.failf("a %T came before the first heartbeat of %s; only pending results may precede it", m.msg.GetKind(), name)
		}
	}
	hb := first.msg.GetHeartbeat()
	r.fail(checkHeartbeat(hb, k.desc.GetCapacity())...)
	return hb, first.at.Sub(s.opened).Round(time.Millisecond)
}

func runEcho(ctx context.Context, k *kit, r *caseRun) {
	st := k.step(HandlerEcho, map[string]any{"greeting": "grüß dich", "n": 7, "nested": map[string]any{"list": []any{1, "two", nil}}})
	// Attempt 3, so an executor that always answers 1 is caught.
	st.Attempt = 3
	st.Context = []byte(`{"customer":"ü-42","amount":12.5,"tags":["a","b"]}`)
	st.ParentResults = map[string][]byte{"charge": []byte(`{"charged":true,"cents":1250}`), "notify": []byte(`[1,"two",null]`), "skipped": []byte(`null`)}
	r.sentf("ExecuteStep %s attempt 3 with context, handler_config, 3 parent_results, idempotency_key", HandlerEcho)
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, st) {
		return
	}
	defer s.drop()
	res := k.await(ctx, r, s, st)
	if res == nil {
		return
	}
	r.gotf("%s", summarize(res))
	r.fail(checkIdentity(st, res, k.desc.GetExecutorId())...)
	if res.GetSuccess() == nil {
		r.failf("want a success, got %s", summarize(res))
	} else if body, err := parseEcho(res.GetSuccess().GetResults()); err != nil {
		r.fail(err.Error())
	} else {
		r.fail(checkEcho(st, body)...)
	}
	k.finish(r, s, st)
}

func runFailure(ctx context.Context, k *kit, r *caseRun) {
	permanent := k.step(HandlerFail, map[string]any{"message": "card declined: ü", "class": "CardDeclined", "permanent": true})
	retryable := k.step(HandlerFail, map[string]any{"message": "rate limited", "class": "RateLimited", "backoff_ms": 1500})
	// No handler_config: the parameters come from the task context, and
	// the defaults fill in the rest.
	defaults := k.step(HandlerFail, nil)
	defaults.HandlerConfig = nil
	defaults.Context = []byte(`{"class":"FromContext"}`)
	r.sentf("3 × %s: permanent CardDeclined; retryable RateLimited with backoff_ms 1500; params in context (class FromContext, default message)", HandlerFail)
	s := k.open(ctx, r)
	if s == nil || !k.sendWithin(ctx, r, s, permanent, retryable, defaults) {
		return
	}
	defer s.drop()
	wants := []wantFailure{
		{class: "CardDeclined", message: "card declined: ü", permanent: ptr(true), noBackoff: true},
		{class: "RateLimited", message: "rate limited", permanent: ptr(false), backoff: ptr(1500 * time.Millisecond)},
		{class: "FromContext", message: "conformance failure", permanent: ptr(false), noBackoff: true},
	}
	var got []string
	for i, st := range []*executorv1.ExecuteStep{permanent, retryable, defaults} {
		res := k.await(ctx, r, s, st)
		if res == nil {
			continue
		}
		got = append(got, summarize(res))
		r.fail(checkIdentity(st, res, k.desc.GetExecutorId())...)
		r.fail(checkFailure(res, wants[i])...)
	}
	r.gotf("%s", strings.Join(got, "; "))
	k.finish(r, s, permanent, retryable, defaults)
}

func runUnknownHandler(ctx context.Context, k *kit, r *caseRun) {
	st := k.step("conformance.no-such-handler-"+k.runID, map[string]any{})
	r.sentf("ExecuteStep for handler %q, which Describe did not list", st.GetHandler())
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, st) {
		return
	}
	defer s.drop()
	start := time.Now()
	res := k.await(ctx, r, s, st)
	if res == nil {
		return
	}
	r.gotf("after %s: %s", time.Since(start).Round(time.Millisecond), summarize(res))
	r.fail(checkIdentity(st, res, k.desc.GetExecutorId())...)
	r.fail(checkFailure(res, wantFailure{class: classUnknownHandler, permanent: ptr(true)})...)
	if f := res.GetFailure(); f != nil && !strings.Contains(f.GetMessage(), HandlerEcho) {
		r.failf("the message does not say which handlers are hosted (e.g. %s): %q", HandlerEcho, f.GetMessage())
	}
	k.finish(r, s, st)
}

func runDuplicate(ctx context.Context, k *kit, r *caseRun) {
	st := k.step(HandlerSleep, sleepParams(shortSleep))
	r.sentf("the same ExecuteStep (%s %s, attempt 1) twice in a row", HandlerSleep, shortSleep)
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, st, st) {
		return
	}
	defer s.drop()
	res := k.await(ctx, r, s, st)
	if res == nil {
		return
	}
	if res.GetSuccess() == nil {
		r.failf("want the running attempt's success, got %s", summarize(res))
	}
	k.finish(r, s, st)
	msgs, _ := s.snapshot()
	r.gotf("%d result(s): %s", len(resultsFor(msgs, st)), summarize(res))
}

func runDeadline(ctx context.Context, k *kit, r *caseRun) {
	past := k.step(HandlerEcho, map[string]any{})
	// An hour ago, so clocks that disagree by minutes still agree it passed.
	past.Deadline = timestamppb.New(time.Now().Add(-time.Hour))
	running := k.step(HandlerSleep, sleepParams(100*k.opts.CaseTimeout))
	running.Deadline = timestamppb.New(time.Now().Add(time.Second))
	r.sentf("%s with a deadline an hour ago; %s %s with a deadline in 1s", HandlerEcho, HandlerSleep, 100*k.opts.CaseTimeout)
	s := k.open(ctx, r)
	if s == nil || !k.sendWithin(ctx, r, s, past, running) {
		return
	}
	defer s.drop()
	var got []string
	for _, st := range []*executorv1.ExecuteStep{past, running} {
		res := k.await(ctx, r, s, st)
		if res == nil {
			continue
		}
		got = append(got, summarize(res))
		r.fail(checkIdentity(st, res, k.desc.GetExecutorId())...)
		r.fail(checkFailure(res, wantFailure{class: classDeadlineExceeded, permanent: ptr(false)})...)
	}
	r.gotf("%s", strings.Join(got, "; "))
	k.finish(r, s, past, running)
}

func runTraceContext(ctx context.Context, k *kit, r *caseRun) {
	traceID, spanID := randomHex(16), randomHex(8)
	sent := map[string]string{"traceparent": "00-" + traceID + "-" + spanID + "-01", "tracestate": "conformance=kit"}
	st := k.step(HandlerEcho, map[string]any{})
	st.TraceContext = sent
	r.sentf("%s with trace_context traceparent %s", HandlerEcho, sent["traceparent"])
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, st) {
		return
	}
	defer s.drop()
	res := k.await(ctx, r, s, st)
	if res == nil {
		return
	}
	if res.GetSuccess() == nil {
		r.gotf("%s", summarize(res))
		r.failf("want a success, got %s", summarize(res))
		return
	}
	body, err := parseEcho(res.GetSuccess().GetResults())
	if err != nil {
		r.fail(err.Error())
		return
	}
	r.gotf("the handler saw trace_context %v", body.TraceContext)
	r.fail(checkTrace(sent, body.TraceContext)...)
	k.finish(r, s, st)
}

func runLargeMessages(ctx context.Context, k *kit, r *caseRun) {
	big := k.step(HandlerEcho, map[string]any{})
	big.Context = jsonBlob("context", contextBytes)
	big.ParentResults = map[string][]byte{"bulk": jsonBlob("parent", parentBytes)}
	pad := resultBytes - 4<<10
	near := k.step(HandlerEcho, map[string]any{"pad": pad})
	r.sentf("%s with a %d-byte context and a %d-byte parent result; %s with pad %d (results just under %d bytes)",
		HandlerEcho, len(big.GetContext()), len(big.GetParentResults()["bulk"]), HandlerEcho, pad, resultBytes)
	s := k.open(ctx, r)
	if s == nil || !k.sendWithin(ctx, r, s, big, near) {
		return
	}
	defer s.drop()
	var got []string
	if res := k.await(ctx, r, s, big); res != nil {
		if res.GetSuccess() == nil {
			r.failf("the large request: want a success, got %s", summarize(res))
		} else if body, err := parseEcho(res.GetSuccess().GetResults()); err != nil {
			r.fail(err.Error())
		} else {
			r.fail(checkEcho(big, body)...)
			got = append(got, fmt.Sprintf("large request echoed intact (%d bytes of results)", len(res.GetSuccess().GetResults())))
		}
	}
	if res := k.await(ctx, r, s, near); res != nil {
		if res.GetSuccess() == nil {
			r.failf("the large result: want a success, got %s", summarize(res))
		} else if body, err := parseEcho(res.GetSuccess().GetResults()); err != nil {
			r.fail(err.Error())
		} else if body.Pad == nil || len(*body.Pad) != pad || strings.Trim(*body.Pad, "x") != "" {
			r.failf("the large result's pad is not %d \"x\" characters", pad)
		} else {
			got = append(got, fmt.Sprintf("a %d-byte result", len(res.GetSuccess().GetResults())))
		}
	}
	r.gotf("%s", strings.Join(got, "; "))
	k.finish(r, s, big, near)
}

// jsonBlob is a JSON object of about n bytes, with non-ASCII text so a
// re-encoding that mangles UTF-8 shows.
func jsonBlob(name string, n int) []byte {
	const unit = "tasker ✓ ü "
	text := strings.Repeat(unit, (n-64)/len(unit))
	b, _ := json.Marshal(map[string]any{"name": name, "blob": text})
	return b
}

func runCapacity(ctx context.Context, k *kit, r *caseRun) {
	capacity := int(k.desc.GetCapacity())
	if capacity < 1 {
		capacity = 1
	}
	if capacity > capacityCap {
		r.skipped = fmt.Sprintf("capacity %d is above %d; the kit does not saturate it", capacity, capacityCap)
		return
	}
	n := capacity + 2
	steps := make([]*executorv1.ExecuteStep, n)
	for i := range steps {
		steps[i] = k.step(HandlerSleep, sleepParams(shortSleep))
	}
	r.sentf("%d × %s %s at once (capacity %d + 2)", n, HandlerSleep, shortSleep, capacity)
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, steps...) {
		return
	}
	defer s.drop()
	probed := k.probeRunning(ctx, s, steps, n-capacity)
	var spans []interval
	refused := 0
	for _, st := range steps {
		res := k.await(ctx, r, s, st)
		if res == nil {
			continue
		}
		switch {
		case res.GetSuccess() != nil:
			span, err := sleepSpan(res.GetSuccess().GetResults())
			if err != nil {
				r.fail(err.Error())
				continue
			}
			spans = append(spans, span)
		default:
			refused++
			r.fail(checkFailure(res, wantFailure{class: classOverCapacity, permanent: ptr(false)})...)
		}
	}
	k.finish(r, s, steps...)
	most := maxConcurrent(spans)
	msgs, _ := s.snapshot()
	listed := max(probed, 0)
	for _, hb := range heartbeats(msgs) {
		listed = max(listed, countListed(hb.msg.GetHeartbeat(), steps))
	}
	probe := "no heartbeat on a second stream"
	if probed >= 0 {
		probe = fmt.Sprintf("the first heartbeat of a second stream listed %d of them running", probed)
	}
	r.gotf("%d succeeded (at most %d running at once by their timestamps), %d refused; %s; heartbeats listed at most %d",
		len(spans), most, refused, probe, listed)
	if probed < 0 {
		r.failf("a second stream opened while the steps ran got no heartbeat within %s", openWithin)
	}
	if most > capacity {
		r.failf("%d steps ran at once, over the capacity of %d", most, capacity)
	}
	if listed > capacity {
		r.failf("a heartbeat listed %d of these steps running, over the capacity of %d", listed, capacity)
	}
	switch {
	case refused > n-capacity:
		r.failf("%d steps were refused but only %d were over the capacity", refused, n-capacity)
	case refused < n-capacity && len(spans)+refused == n:
		r.failf("%d of the %d steps beyond the capacity were not refused: a step that arrives while capacity steps run is answered at once with a retryable ExecutorOverCapacity, not queued", n-capacity-refused, n-capacity)
	}
}

// probeRunning waits until the executor has answered refused of steps
// (the refusals come at once; the others run), then opens a second stream:
// its first heartbeat must list every attempt running in the process,
// whichever stream sent it. It returns how many of steps it listed, or -1
// when no heartbeat came.
func (k *kit) probeRunning(ctx context.Context, s *stream, steps []*executorv1.ExecuteStep, refused int) int {
	wctx, cancel := context.WithTimeout(ctx, k.opts.CaseTimeout)
	defer cancel()
	s.waitFor(wctx, func(msgs []received, _ error) bool {
		n := 0
		for _, st := range steps {
			if firstResult(msgs, st) != nil {
				n++
			}
		}
		return n >= refused
	})
	probe, err := openStream(ctx, k.client, k.coordinatorID)
	if err != nil {
		return -1
	}
	defer probe.drop()
	hctx, hcancel := context.WithTimeout(ctx, openWithin)
	defer hcancel()
	probe.waitFor(hctx, func(msgs []received, _ error) bool { return len(heartbeats(msgs)) > 0 })
	msgs, _ := probe.snapshot()
	hbs := heartbeats(msgs)
	if len(hbs) == 0 {
		return -1
	}
	return countListed(hbs[0].msg.GetHeartbeat(), steps)
}

// countListed is how many of steps hb lists as running.
func countListed(hb *executorv1.Heartbeat, steps []*executorv1.ExecuteStep) int {
	n := 0
	for _, st := range steps {
		if lists(hb, st) {
			n++
		}
	}
	return n
}

func runHalfClose(ctx context.Context, k *kit, r *caseRun) {
	st := k.step(HandlerSleep, sleepParams(shortSleep))
	r.sentf("%s %s, then half-close the stream at once", HandlerSleep, shortSleep)
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, st) {
		return
	}
	defer s.drop()
	if err := s.halfClose(); err != nil {
		r.fail(err.Error())
		return
	}
	var end error
	s.waitFor(ctx, func(_ []received, e error) bool { end = e; return e != nil })
	msgs, _ := s.snapshot()
	n := len(resultsFor(msgs, st))
	r.gotf("%d result(s), then the stream ended: %s", n, describeErr(end))
	switch {
	case end == nil:
		r.failf("the stream did not end within %s after the half-close and the step's result", k.opts.CaseTimeout)
	case n == 0:
		r.failf("the stream ended (%s) before the result of a step sent before the half-close", describeErr(end))
	case !isEOF(end):
		r.failf("the stream ended with an error instead of cleanly: %s", describeErr(end))
	}
	if n > 1 {
		r.fail(countProblem(st, n))
	}
}

func runCancel(ctx context.Context, k *kit, r *caseRun) {
	long := 100 * k.opts.CaseTimeout
	st := k.step(HandlerSleep, sleepParams(long))
	r.sentf("%s %s; once it runs (an echo after it answered), CancelStep for it", HandlerSleep, long)
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, st) {
		return
	}
	defer s.drop()
	b := k.barrier(ctx, r, s)
	if b == nil {
		return
	}
	if err := s.cancelStep(st, "executor-check cancel case"); err != nil {
		r.fail(err.Error())
		return
	}
	cancelled := time.Now()
	res := k.awaitWithin(ctx, r, s, st, k.opts.CaseTimeout)
	if res == nil {
		r.failf("CancelStep did not stop %s: the handler must be cancelled and the attempt still answered", HandlerSleep)
		return
	}
	r.gotf("%s after %s", summarize(res), time.Since(cancelled).Round(time.Millisecond))
	r.fail(checkIdentity(st, res, k.desc.GetExecutorId())...)
	r.fail(checkFailure(res, wantFailure{class: classCancelled, permanent: ptr(false)})...)
	k.finish(r, s, st, b)
}

func runHeartbeatCadence(ctx context.Context, k *kit, r *caseRun) {
	every := k.opts.HeartbeatInterval
	run := every + every/2
	st := k.step(HandlerSleep, sleepParams(run))
	r.sentf("open a stream, then %s %s; watch heartbeats (expected every %s)", HandlerSleep, run, every)
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, st) {
		return
	}
	defer s.drop()
	sent := time.Now()
	res := k.await(ctx, r, s, st)
	if res == nil {
		return
	}
	msgs, _ := s.snapshot()
	var resultAt time.Time
	for _, m := range msgs {
		if m.msg.GetStepResult() == res {
			resultAt = m.at
		}
	}
	var times []time.Time
	listing, periodic := 0, false
	var lastBefore *executorv1.Heartbeat
	for _, hb := range heartbeats(msgs) {
		if hb.at.After(resultAt) {
			break
		}
		times = append(times, hb.at)
		h := hb.msg.GetHeartbeat()
		r.fail(checkHeartbeat(h, k.desc.GetCapacity())...)
		if hb.at.After(sent) {
			lastBefore = h
			if lists(h, st) {
				listing++
				if hb.at.Sub(sent) >= every/2 {
					periodic = true
				}
			}
		}
	}
	gap := maxGap(times, resultAt)
	r.gotf("%d heartbeats in %s (longest gap %s); %d listed the running attempt", len(times), resultAt.Sub(s.opened).Round(time.Millisecond), gap.Round(time.Millisecond), listing)
	if gap > 2*every {
		r.failf("%s passed without a heartbeat; send one every %s (the coordinator drops a stream silent for 3 intervals)", gap.Round(time.Millisecond), every)
	}
	if listing == 0 {
		r.failf("no heartbeat listed attempt %d of step %s in running while it ran", st.GetAttempt(), st.GetStepId())
	} else if !periodic {
		r.failf("no heartbeat after the first %s of the step listed it: periodic heartbeats must list running attempts", every/2)
	}
	if lastBefore != nil && !lists(lastBefore, st) {
		r.failf("the last heartbeat before the result did not list the still-running attempt")
	}
	if !periodic && len(times) < 2 {
		r.failf("only the first heartbeat arrived; none at the %s cadence", every)
	}
	k.finish(r, s, st)
}

func runRedelivery(ctx context.Context, k *kit, r *caseRun) {
	run := 1500 * time.Millisecond
	st := k.step(HandlerSleep, sleepParams(run))
	path := "the next stream"
	if k.coord != nil {
		path += " or ReportStepResult to the kit"
	}
	r.sentf("%s %s on stream 1; once it runs, break stream 1 (RST_STREAM) and open stream 2; the result must come on %s", HandlerSleep, run, path)
	first := k.open(ctx, r)
	if first == nil || !k.send(r, first, st) {
		return
	}
	b := k.barrier(ctx, r, first)
	if b == nil {
		first.drop()
		return
	}
	first.drop()
	second := k.open(ctx, r)
	if second == nil {
		return
	}
	defer second.drop()
	wctx, cancel := context.WithTimeout(ctx, k.opts.CaseTimeout+run)
	defer cancel()
	if !k.waitAnywhere(wctx, second, st, false) {
		_, end := second.snapshot()
		if end != nil && k.coord == nil {
			r.failf("stream 2 ended before the result came: %s", describeErr(end))
			return
		}
		r.failf("the result of %s attempt 1 never came on %s; a result whose stream broke must be redelivered", HandlerSleep, path)
		return
	}
	k.finish(r, second)
	msgs, _ := second.snapshot()
	onStream, reported := resultsFor(msgs, st), k.coord.reportsFor(st)
	firstMsgs, _ := first.snapshot()
	onFirst := resultsFor(firstMsgs, st)
	r.gotf("%d on stream 1, %d on stream 2, %d through ReportStepResult", len(onFirst), len(onStream), len(reported))
	all := append(append(onFirst, onStream...), reported...)
	if len(all) > 1 {
		r.failf("the result arrived %d times; a result not yet delivered goes by one path, once", len(all))
	}
	for _, res := range all {
		r.fail(checkIdentity(st, res, k.desc.GetExecutorId())...)
		if res.GetSuccess() == nil {
			r.failf("want the handler's success, got %s (breaking the stream must not stop the handler)", summarize(res))
		}
	}
}

// waitAnywhere waits until step's result came on s or through the
// stand-in coordinator and, with needEnd, s has ended too; it reports
// whether that happened before ctx ended.
func (k *kit) waitAnywhere(ctx context.Context, s *stream, step *executorv1.ExecuteStep, needEnd bool) bool {
	for {
		// Channels first, then the state: a change in between still wakes us.
		reported, changed := k.coord.watch(), s.changedCh()
		msgs, end := s.snapshot()
		have := firstResult(msgs, step) != nil || len(k.coord.reportsFor(step)) > 0
		if have && (!needEnd || end != nil) {
			return true
		}
		if end != nil && k.coord == nil && !have {
			return false
		}
		select {
		case <-changed:
		case <-reported:
		case <-ctx.Done():
			return false
		}
	}
}

func runShutdown(ctx context.Context, k *kit, r *caseRun) {
	if k.opts.Shutdown == nil {
		r.skipped = "needs control of the executor process: give --shutdown-cmd (or Options.Shutdown)"
		return
	}
	run := time.Second
	st := k.step(HandlerSleep, sleepParams(run))
	r.sentf("%s %s; once it runs, the shutdown command; then wait for its result and the stream's end", HandlerSleep, run)
	s := k.open(ctx, r)
	if s == nil || !k.send(r, s, st) {
		return
	}
	defer s.drop()
	b := k.barrier(ctx, r, s)
	if b == nil {
		return
	}
	if err := k.opts.Shutdown(ctx); err != nil {
		r.failf("the shutdown command failed: %v", err)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, k.opts.CaseTimeout+run)
	defer cancel()
	k.waitAnywhere(wctx, s, st, true)
	msgs, end := s.snapshot()
	onStream, reported := resultsFor(msgs, st), k.coord.reportsFor(st)
	r.gotf("%d result(s) on the stream, %d through ReportStepResult; the stream ended: %s", len(onStream), len(reported), describeErr(end))
	all := append(onStream, reported...)
	if len(all) == 0 {
		r.failf("the running step's result was lost at shutdown; wait for running handlers and deliver their results")
	}
	for _, res := range all {
		if f := res.GetFailure(); f != nil && (f.GetPermanent() || !strings.EqualFold(f.GetErrorClass(), classCancelled) && !strings.EqualFold(f.GetErrorClass(), classShuttingDown)) {
			r.failf("want the step's success (or a retryable Cancelled), got %s", summarize(res))
		}
	}
	switch {
	case end == nil:
		r.failf("the stream did not end within %s of the shutdown", k.opts.CaseTimeout*4)
	case !isEOF(end):
		r.failf("the stream ended with an error instead of cleanly: %s", describeErr(end))
	}
}
