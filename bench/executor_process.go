package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tasker-go/tasker/executor"
)

// executorCommand is the subcommand of the tasker binary that runs
// ServeExecutorProcess (cmd/tasker registers it): bench starts its
// executors with it when Config.ExecutorBinary is set.
var executorCommand = []string{"bench", "executor"}

// announcePrefix starts the one line an executor process writes to stdout
// once it serves; the control server's address follows.
const announcePrefix = "bench-executor control="

// ExecutorProcessConfig configures one executor process.
type ExecutorProcessConfig struct {
	// ID names the executor to the coordinators.
	ID string
	// Capacity is how many steps it runs at once; default
	// DefaultExecutorCapacity.
	Capacity int
	// Coordinators are the coordinators to register with, the first one
	// first; at least one.
	Coordinators []string
	// Logger receives the executor's logs; default discards them.
	Logger *slog.Logger
}

// ServeExecutorProcess is the body of an executor process: an executor
// hosting a Recorder on a loopback port, registered with the coordinators,
// plus a loopback HTTP control server through which the bench process that
// started it reads what the recorder saw and takes CPU profiles. It writes
// one line naming the control server to announce once both serve, and
// returns once ctx ends.
func ServeExecutorProcess(ctx context.Context, cfg ExecutorProcessConfig, announce io.Writer) error {
	if cfg.ID == "" || len(cfg.Coordinators) == 0 || cfg.Capacity < 0 {
		return fmt.Errorf("%w: an executor process needs an id, a coordinator and a capacity ≥ 0", ErrInvalidConfig)
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultExecutorCapacity
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rec := NewRecorder()
	ex, err := executor.New(executor.Config{
		ID: cfg.ID, Capacity: cfg.Capacity, Coordinator: cfg.Coordinators[0], Coordinators: cfg.Coordinators[1:],
		Logger: cfg.Logger, ShutdownTimeout: 5 * time.Second, DeliveryTimeout: 5 * time.Second,
	})
	if err == nil {
		err = ex.Handle(NoopHandler, rec.Handle)
	}
	if err != nil {
		return fmt.Errorf("executor %s: %w", cfg.ID, err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("executor %s: listen: %w", cfg.ID, err)
	}
	clis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("executor %s: listen for control: %w", cfg.ID, err)
	}
	ctl := &http.Server{Handler: (&control{rec: rec}).handler(), ReadHeaderTimeout: 5 * time.Second}
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- ctl.Serve(clis) }()
	served := make(chan error, 1)
	go func() { served <- ex.Serve(ctx, lis) }()
	if _, err := fmt.Fprintf(announce, "%s%s\n", announcePrefix, clis.Addr()); err != nil {
		err = fmt.Errorf("announce the control address: %w", err)
		_ = ctl.Close()
		<-ctlDone
		return errors.Join(err, <-served)
	}
	serveErr := <-served
	// The control server outlives the executor only as long as the parent
	// needs to read it, which is before it stops the process.
	_ = ctl.Close()
	if err := <-ctlDone; !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(serveErr, err)
	}
	return serveErr
}

// control serves an executor process's recorder and profiler to the bench
// process.
type control struct {
	rec *Recorder
	// mu guards profile: one CPU profile at a time.
	mu      sync.Mutex
	profile *bytes.Buffer
}

// countsBody is GET /counts.
type countsBody struct {
	Invocations int64 `json:"invocations"`
	Steps       int64 `json:"steps"`
}

// receivedRequest is POST /received: attempts to look up.
type receivedRequest struct {
	Keys []receivedKey `json:"keys"`
}

type receivedKey struct {
	StepID  string `json:"step_id"`
	Attempt int    `json:"attempt"`
}

// receivedResponse answers, per key in order, when the attempt first
// reached the handler (Unix nanoseconds), 0 for never.
type receivedResponse struct {
	AtUnixNano []int64 `json:"at_unix_nano"`
}

func (c *control) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		inv, steps := c.rec.Counts()
		writeJSON(w, countsBody{Invocations: inv, Steps: steps})
	})
	mux.HandleFunc("GET /steps", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		bw := bufio.NewWriter(w)
		for _, id := range c.rec.stepIDs() {
			_, _ = bw.WriteString(id)
			_ = bw.WriteByte('\n')
		}
		_ = bw.Flush()
	})
	mux.HandleFunc("POST /received", func(w http.ResponseWriter, r *http.Request) {
		var req receivedRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "received: "+err.Error(), http.StatusBadRequest)
			return
		}
		resp := receivedResponse{AtUnixNano: make([]int64, len(req.Keys))}
		for i, k := range req.Keys {
			if at, ok := c.rec.ReceivedAt(k.StepID, k.Attempt); ok {
				resp.AtUnixNano[i] = at.UnixNano()
			}
		}
		writeJSON(w, resp)
	})
	mux.HandleFunc("POST /profile/start", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.profile != nil {
			http.Error(w, "a profile is already running", http.StatusConflict)
			return
		}
		buf := &bytes.Buffer{}
		if err := pprof.StartCPUProfile(buf); err != nil {
			http.Error(w, "start profile: "+err.Error(), http.StatusInternalServerError)
			return
		}
		c.profile = buf
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /profile/stop", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.profile == nil {
			http.Error(w, "no profile is running", http.StatusConflict)
			return
		}
		pprof.StopCPUProfile()
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(c.profile.Bytes())
		c.profile = nil
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// processFleet runs each executor as a child process of
// Config.ExecutorBinary.
type processFleet struct {
	children []*Child
	// controls are the children's control URLs, in children's order.
	controls []string
	client   *http.Client
}

// startProcessFleet starts one executor process per id, each registered
// with every coordinator in addrs, and waits until each announces its
// control server. The coordinators' streams to them are awaited by the
// caller, as for executors in this process.
func startProcessFleet(ctx context.Context, cfg Config, ids []string, addrs []string) (*processFleet, error) {
	f := &processFleet{client: &http.Client{Timeout: time.Minute}}
	for _, id := range ids {
		c, ctl, err := startExecutorProcess(ctx, cfg, id, addrs)
		if err != nil {
			return f, err
		}
		f.children = append(f.children, c)
		f.controls = append(f.controls, ctl)
	}
	return f, nil
}

func startExecutorProcess(ctx context.Context, cfg Config, id string, addrs []string) (*Child, string, error) {
	args := append(append([]string(nil), executorCommand...),
		"--id", id, "--capacity", strconv.Itoa(cfg.ExecutorCapacity), "--coordinator-addrs", strings.Join(addrs, ","))
	cmd := exec.Command(cfg.ExecutorBinary, args...)
	out := cfg.ExecutorOutput
	if out == nil {
		out = io.Discard
	}
	cmd.Stderr = out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", fmt.Errorf("executor %s: %w", id, err)
	}
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start executor %s with %s: %w", id, cfg.ExecutorBinary, err)
	}
	c := &Child{PID: cmd.Process.Pid, what: "executor " + id, cmd: cmd, exited: make(chan struct{})}
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		lines <- line
		// Whatever else the child prints goes where its stderr goes; the
		// pipe must be drained before Wait returns.
		_, _ = io.Copy(out, br)
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	timer := time.NewTimer(DefaultReadyTimeout)
	defer timer.Stop()
	var line string
	select {
	case line = <-lines:
	case <-ctx.Done():
		return nil, "", errors.Join(fmt.Errorf("executor %s: %w", id, ctx.Err()), c.Stop(5*time.Second))
	case <-timer.C:
		return nil, "", errors.Join(fmt.Errorf("executor %s did not announce itself within %s", id, DefaultReadyTimeout), c.Stop(5*time.Second))
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), announcePrefix)
	if !ok {
		err := fmt.Errorf("executor %s: first line %q is not %q followed by an address (is %s a tasker binary?)", id, line, announcePrefix, cfg.ExecutorBinary)
		return nil, "", errors.Join(err, c.Stop(5*time.Second))
	}
	return c, "http://" + addr, nil
}

func (f *processFleet) counts(ctx context.Context, exact bool) (int64, int64, error) {
	var inv, steps int64
	for _, ctl := range f.controls {
		var body countsBody
		if err := f.call(ctx, http.MethodGet, ctl+"/counts", nil, &body); err != nil {
			return 0, 0, err
		}
		inv += body.Invocations
		steps += body.Steps
	}
	if !exact || len(f.controls) < 2 {
		return inv, steps, nil
	}
	// A step dispatched twice, to two executors, is one step run twice.
	seen := map[string]struct{}{}
	for _, ctl := range f.controls {
		var ids bytes.Buffer
		if err := f.call(ctx, http.MethodGet, ctl+"/steps", nil, &ids); err != nil {
			return 0, 0, err
		}
		for id := range strings.Lines(ids.String()) {
			seen[strings.TrimSuffix(id, "\n")] = struct{}{}
		}
	}
	return inv, int64(len(seen)), nil
}

func (f *processFleet) receivedAt(ctx context.Context, keys []attemptKey) (map[attemptKey]time.Time, error) {
	req := receivedRequest{Keys: make([]receivedKey, len(keys))}
	for i, k := range keys {
		req.Keys[i] = receivedKey{StepID: k.stepID, Attempt: k.attempt}
	}
	out := make(map[attemptKey]time.Time, len(keys))
	for _, ctl := range f.controls {
		var resp receivedResponse
		if err := f.call(ctx, http.MethodPost, ctl+"/received", req, &resp); err != nil {
			return nil, err
		}
		if len(resp.AtUnixNano) != len(keys) {
			return nil, fmt.Errorf("%s/received: %d answers for %d keys", ctl, len(resp.AtUnixNano), len(keys))
		}
		for i, ns := range resp.AtUnixNano {
			// A step re-dispatched to another executor on the same attempt
			// counts from its first arrival anywhere.
			if at := time.Unix(0, ns); ns != 0 && (out[keys[i]].IsZero() || at.Before(out[keys[i]])) {
				out[keys[i]] = at
			}
		}
	}
	return out, nil
}

func (f *processFleet) pids() []int {
	out := make([]int, len(f.children))
	for i, c := range f.children {
		out[i] = c.PID
	}
	return out
}

func (f *processFleet) startProfile(ctx context.Context) error {
	for _, ctl := range f.controls {
		if err := f.call(ctx, http.MethodPost, ctl+"/profile/start", nil, nil); err != nil {
			return err
		}
	}
	return nil
}

func (f *processFleet) stopProfile(ctx context.Context) ([][]byte, error) {
	out := make([][]byte, len(f.controls))
	for i, ctl := range f.controls {
		var buf bytes.Buffer
		if err := f.call(ctx, http.MethodPost, ctl+"/profile/stop", nil, &buf); err != nil {
			return nil, err
		}
		out[i] = buf.Bytes()
	}
	return out, nil
}

func (f *processFleet) stop() error {
	defer f.client.CloseIdleConnections()
	errs := make([]error, len(f.children))
	var wg sync.WaitGroup
	for i, c := range f.children {
		wg.Go(func() { errs[i] = c.Stop(10 * time.Second) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// call makes one control request; in is sent as JSON when not nil, and the
// answer is decoded as JSON into out, or copied when out is a
// *bytes.Buffer.
func (f *processFleet) call(ctx context.Context, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, url, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(msg)))
	}
	switch o := out.(type) {
	case nil:
		_, _ = io.Copy(io.Discard, resp.Body)
	case *bytes.Buffer:
		if _, err := io.Copy(o, resp.Body); err != nil {
			return fmt.Errorf("%s %s: %w", method, url, err)
		}
	default:
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return nil
}
