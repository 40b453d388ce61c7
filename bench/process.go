package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// ChildConfig describes a coordinator for StartChild to run as a child
// process. Running it apart from the load generator is what lets its CPU
// and memory be measured on their own.
type ChildConfig struct {
	// Binary is the tasker executable, usually os.Executable().
	Binary string
	// DB is the coordinator's --db: a SQLite file, created if missing and
	// used as is if not, or a postgres:// URL (see IsPostgres).
	DB string
	// Sync is the SQLite synchronous mode, "full" (the default) or
	// "normal". It is not passed for PostgreSQL, whose durability is the
	// server's synchronous_commit.
	Sync string
	// ID is the coordinator's --id, which names its lease; several children
	// on one PostgreSQL database need different ones. Empty takes the
	// coordinator's default.
	ID string
	// Output receives the child's stdout and stderr; nil discards them.
	Output io.Writer
	// ReadyTimeout bounds the wait for the child to serve; default 30s.
	ReadyTimeout time.Duration
	// Pprof serves net/http/pprof beside /metrics (the coordinator's
	// --pprof), so a run can take the child's CPU profile.
	Pprof bool
}

// Child is a coordinator or an executor running as a child process.
type Child struct {
	// Addr is its gRPC address, MetricsURL its Prometheus endpoint and PID
	// its process id; PprofURL is the base of its /debug/pprof endpoints
	// when it serves them. An executor child has only a PID.
	Addr       string
	MetricsURL string
	PprofURL   string
	PID        int

	// what names the child in errors.
	what string
	cmd  *exec.Cmd
	// exited is closed once the process has been waited for; waitErr is
	// valid after that.
	exited  chan struct{}
	waitErr error
}

// StartChild starts `tasker coordinator` on free loopback ports and waits
// until both its gRPC API and its /healthz answer.
func StartChild(ctx context.Context, cfg ChildConfig) (*Child, error) {
	if cfg.Binary == "" || cfg.DB == "" {
		return nil, fmt.Errorf("%w: child needs a binary and a db", ErrInvalidConfig)
	}
	switch {
	case IsPostgres(cfg.DB):
		cfg.Sync = ""
	case cfg.Sync == "":
		cfg.Sync = "full"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"coordinator",
		"--listen", grpcAddr, "--http-listen", httpAddr,
		"--db", cfg.DB, "--log-level", "error", "--shutdown-timeout", "5s"}
	if cfg.Sync != "" {
		args = append(args, "--sync", cfg.Sync)
	}
	if cfg.ID != "" {
		args = append(args, "--id", cfg.ID)
	}
	if cfg.Pprof {
		args = append(args, "--pprof")
	}
	cmd := exec.Command(cfg.Binary, args...)
	cmd.Stdout, cmd.Stderr = cfg.Output, cfg.Output
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start coordinator %s: %w", cfg.Binary, err)
	}
	c := &Child{
		Addr: grpcAddr, MetricsURL: "http://" + httpAddr + "/metrics", PID: cmd.Process.Pid,
		what: "coordinator", cmd: cmd, exited: make(chan struct{}),
	}
	if cfg.Pprof {
		c.PprofURL = "http://" + httpAddr + "/debug/pprof"
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	if err := c.awaitReady(ctx, "http://"+httpAddr+"/healthz", cfg.ReadyTimeout); err != nil {
		_ = c.Stop(5 * time.Second)
		return nil, err
	}
	return c, nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. Another process could take it before the child binds it; the child
// then fails to start and StartChild says so.
func freeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

// awaitReady polls /healthz and a cheap gRPC call until both answer.
func (c *Child) awaitReady(ctx context.Context, healthURL string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial coordinator %s: %w", c.Addr, err)
	}
	defer func() { _ = conn.Close() }()
	client := coordinatorv1.NewCoordinatorServiceClient(conn)
	httpClient := &http.Client{Timeout: time.Second}
	defer httpClient.CloseIdleConnections()
	var last error
	for {
		last = c.probe(ctx, httpClient, healthURL, client)
		if last == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("coordinator exited before serving: %w", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("coordinator not ready after %s: %w", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Child) probe(ctx context.Context, httpClient *http.Client, healthURL string, client coordinatorv1.CoordinatorServiceClient) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = client.ListExecutors(cctx, &coordinatorv1.ListExecutorsRequest{})
	return err
}

// Stop asks the child to shut down (SIGTERM: it commits what is in flight
// and closes its store cleanly) and kills it if it has not exited within
// grace. It reports a child that exited with a failure, including before
// Stop was called, or that had to be killed.
func (c *Child) Stop(grace time.Duration) error {
	select {
	case <-c.exited:
		return c.exitErr()
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", c.what, err)
	}
	select {
	case <-c.exited:
		return c.exitErr()
	case <-time.After(grace):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("stop %s: killed after %s without exiting", c.what, grace)
}

// exitErr is the child's exit status as an error; call it after exited.
func (c *Child) exitErr() error {
	if c.waitErr != nil {
		return fmt.Errorf("%s exited: %w", c.what, c.waitErr)
	}
	return nil
}
