package coordinator_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store/sqlite"
)

// node is a coordinator on a SQLite file and a fixed address that a test
// can crash and start again, as a process would be.
type node struct {
	t     testing.TB
	path  string
	addr  string
	cfg   coordinator.Config
	busy  time.Duration
	store *sqlite.Store
	coord *coordinator.Coordinator
	srv   *grpc.Server
	// client, when set, is the harness's connection to the node: crash
	// waits until it has noticed, and start until it is connected again,
	// so a test's next call goes to the new run instead of into a
	// connection the old one reset.
	client *grpc.ClientConn
}

func startNode(t testing.TB, path, addr string, cfg coordinator.Config, busy time.Duration) *node {
	t.Helper()
	if cfg.ID == "" {
		// Stable across restarts, as the CLI's default is, so a restart
		// takes its tasks back at once.
		cfg.ID = "node-" + addr
	}
	n := &node{t: t, path: path, addr: addr, cfg: cfg, busy: busy}
	n.start()
	t.Cleanup(n.crash)
	return n
}

func (n *node) start() {
	t := n.t
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: n.path, BusyTimeout: n.busy, Logger: testLogger(t)})
	require.NoError(t, err)
	cfg := n.cfg
	cfg.Store, cfg.Logger = st, testLogger(t)
	coord, err := coordinator.New(cfg)
	require.NoError(t, err)
	require.NoError(t, coord.Start(ctx))
	var lis net.Listener
	// The previous run's port may take a moment to be released.
	require.Eventually(t, func() bool {
		lis, err = net.Listen("tcp", n.addr)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	srv := grpc.NewServer(coord.ServerOptions()...)
	coord.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	n.store, n.coord, n.srv = st, coord, srv
	if n.client != nil {
		n.client.Connect()
		n.awaitClient(func(s connectivity.State) bool { return s == connectivity.Ready })
	}
}

// awaitClient waits until the harness's connection is in a state done
// accepts.
func (n *node) awaitClient(done func(connectivity.State) bool) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for s := n.client.GetState(); !done(s); s = n.client.GetState() {
		if !n.client.WaitForStateChange(ctx, s) {
			require.FailNow(n.t, "the harness's connection stayed "+s.String())
		}
	}
}

// crash stops the node without a graceful drain: in-memory state is gone,
// attempts in flight stay in_progress in the store.
func (n *node) crash() {
	if n.srv == nil {
		return
	}
	n.srv.Stop()
	if n.client != nil {
		n.awaitClient(func(s connectivity.State) bool { return s != connectivity.Ready })
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = n.coord.Stop(ctx)
	_ = n.store.Close()
	n.srv = nil
}

// nodeHarness builds a harness around a restartable node.
func nodeHarness(t testing.TB, cfg coordinator.Config, busy time.Duration) (*harness, *node) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	n := startNode(t, filepath.Join(t.TempDir(), "tasker.db"), addr, cfg, busy)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	n.client = cc
	return &harness{t: t, ctx: ctx, store: n.store, coord: n.coord, addr: addr, client: coordinatorv1.NewCoordinatorServiceClient(cc), log: testLogger(t)}, n
}

// proxy forwards TCP connections to a target until cut; while cut it
// drops every connection and refuses new ones, like a network partition.
type proxy struct {
	lis    net.Listener
	target string

	mu    sync.Mutex // protects cut and conns
	cut   bool
	conns map[net.Conn]struct{}
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		_ = lis.Close()
		p.partition(true)
	})
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) serve() {
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src) // ends when either side or the partition closes
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// partition cuts (true) or heals (false) the link.
func (p *proxy) partition(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}
