package e2e

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proxy forwards TCP connections from a loopback listener to a target, and
// can partition the path: every live connection is dropped and new ones are
// refused until it heals. The chaos test puts one between the coordinator
// and an executor, which is the direction the coordinator dials.
type proxy struct {
	target string
	lis    net.Listener
	wg     sync.WaitGroup // accept loop and connection handlers

	mu      sync.Mutex // protects links, down, closed, dropped and refused
	links   map[*link]struct{}
	down    bool
	closed  bool
	dropped int // connections cut by partitions
	refused int // connections refused while partitioned
}

// link is one proxied connection: the accepted side and the dialled side.
type link struct {
	client, server net.Conn
}

// cut closes both sides at once with RST rather than FIN, so peers see the
// abrupt end a failed network gives, not an orderly goodbye.
func (l *link) cut() {
	for _, c := range []net.Conn{l.client, l.server} {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// startProxy listens on a free 127.0.0.1 port and forwards to target until
// the test ends.
func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{target: target, lis: lis, links: map[*link]struct{}{}}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.close)
	return p
}

// addr is where clients should connect instead of the target.
func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) acceptLoop() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.down || p.closed {
			if p.down {
				p.refused++
			}
			p.mu.Unlock()
			(&link{client: c}).cut()
			continue
		}
		l := &link{client: c}
		p.links[l] = struct{}{}
		p.wg.Go(func() { p.serve(l) })
		p.mu.Unlock()
	}
}

// serve dials the target for l and copies bytes both ways until either side
// ends or the link is cut.
func (p *proxy) serve(l *link) {
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		l.cut()
	}()
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	if _, live := p.links[l]; !live {
		// Partitioned while dialling.
		p.mu.Unlock()
		_ = server.Close()
		return
	}
	l.server = server
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(server, l.client)
	go pipe(l.client, server)
	<-done
	l.cut()
	<-done
}

// partition drops every live connection and refuses new ones until heal.
// It returns how many connections it dropped.
func (p *proxy) partition() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	n := len(p.links)
	for l := range p.links {
		delete(p.links, l)
		l.cut()
	}
	p.dropped += n
	return n
}

// heal lets connections through again.
func (p *proxy) heal() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// active is the number of live proxied connections.
func (p *proxy) active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// stats reports the connections dropped and refused by partitions so far.
func (p *proxy) stats() (dropped, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped, p.refused
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	for l := range p.links {
		delete(p.links, l)
		l.cut()
	}
	p.mu.Unlock()
	_ = p.lis.Close()
	p.wg.Wait()
}

// TestProxy checks the proxy the chaos test relies on: it forwards, a
// partition cuts live connections and refuses new ones, and heal restores
// the path.
func TestProxy(t *testing.T) {
	t.Parallel()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var echoes sync.WaitGroup
	t.Cleanup(func() { _ = echo.Close(); echoes.Wait() })
	echoes.Go(func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			echoes.Go(func() {
				defer func() { _ = c.Close() }()
				_, _ = io.Copy(c, c)
			})
		}
	})
	p := startProxy(t, echo.Addr().String())

	roundTrip := func(c net.Conn, msg string) (string, error) {
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			return "", err
		}
		return bufio.NewReader(c).ReadString('\n')
	}

	c1, err := net.Dial("tcp", p.addr())
	require.NoError(t, err)
	defer func() { _ = c1.Close() }()
	got, err := roundTrip(c1, "hello")
	require.NoError(t, err)
	require.Equal(t, "hello\n", got)
	require.Eventually(t, func() bool { return p.active() == 1 }, 5*time.Second, 10*time.Millisecond)

	require.Equal(t, 1, p.partition())
	_, err = roundTrip(c1, "after partition")
	require.Error(t, err, "a partition cuts live connections")

	// The listener stays up and resets what it accepts, so the reset may
	// reach the dialler during connect or on its first read.
	c2, err := net.Dial("tcp", p.addr())
	if err == nil {
		_, err = roundTrip(c2, "while partitioned")
		_ = c2.Close()
	}
	require.Error(t, err, "nothing gets through while partitioned")
	require.Eventually(t, func() bool { _, refused := p.stats(); return refused == 1 }, 5*time.Second, 10*time.Millisecond)

	p.heal()
	c3, err := net.Dial("tcp", p.addr())
	require.NoError(t, err)
	defer func() { _ = c3.Close() }()
	got, err = roundTrip(c3, "healed")
	require.NoError(t, err)
	require.Equal(t, "healed\n", got)
	dropped, refused := p.stats()
	require.Equal(t, 1, dropped)
	require.Equal(t, 1, refused)
}
