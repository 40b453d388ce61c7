package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tasker-go/tasker/auth"
)

// newRegistry is the Prometheus registry of a coordinator process: Go
// runtime and process metrics, the store's group-commit counters, and
// whatever the coordinator registers.
func newRegistry(stats func() (commits, writes int64)) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tasker_store_commits_total", Help: "Transactions the store committed (each holds one or more writes: group commit).",
		}, func() float64 { c, _ := stats(); return float64(c) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tasker_store_writes_total", Help: "Writes (task creations and advances) the store committed; divided by commits it gives the mean batch size.",
		}, func() float64 { _, w := stats(); return float64(w) }),
	)
	return reg
}

// httpServer is a running --http-listen server.
type httpServer struct {
	addr string
	srv  *http.Server
	done chan struct{}
}

// serveHTTP serves /metrics, /healthz and, when withPprof, /debug/pprof on
// addr until stop. sec decides TLS and tokens; every path but /healthz
// needs a read token when tokens are on, since what is served here (and
// the dashboard and REST API to come) tells a caller as much as the read
// RPCs do.
func serveHTTP(addr string, reg *prometheus.Registry, withPprof bool, sec httpSecurity, log *slog.Logger) (*httpServer, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	guard := auth.NewHTTPGuard(auth.HTTPGuardConfig{
		Authenticator: sec.authn, Need: auth.AccessRead, Public: []string{"/healthz"}, Logger: log,
	})
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-listen: listen on %s: %w", addr, err)
	}
	h := &httpServer{
		addr: lis.Addr().String(),
		srv:  &http.Server{Handler: guard.Wrap(mux), ReadHeaderTimeout: 10 * time.Second, TLSConfig: sec.tls},
		done: make(chan struct{}),
	}
	go func() {
		defer close(h.done)
		var err error
		if sec.tls != nil {
			// The certificate is in TLSConfig already.
			err = h.srv.ServeTLS(lis, "", "")
		} else {
			err = h.srv.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("http serving", "addr", h.addr, "pprof", withPprof, "tls", sec.tls != nil, "tokens", sec.authn != nil)
	return h, nil
}

// stop shuts the server down, giving requests in progress a few seconds,
// and returns once it has stopped.
func (h *httpServer) stop() {
	if h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		_ = h.srv.Close()
	}
	<-h.done
}
