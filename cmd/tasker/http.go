package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tasker-go/tasker"
	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/web"
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

// httpConfig is what one --http-listen server serves.
type httpConfig struct {
	addr  string
	reg   *prometheus.Registry
	pprof bool
	sec   httpSecurity
	log   *slog.Logger
	// ready answers /healthz/ready; nil is ready whenever the process
	// serves.
	ready func(context.Context) error
	// api, when set, serves the REST/JSON API under /api/v1/. It checks
	// tokens itself (the coordinator does, for each call), so it is not
	// behind the guard, and /api/openapi.json is served beside it.
	api *apiGateway
}

// readyTimeout bounds one readiness check, whatever the probe allows.
const readyTimeout = 5 * time.Second

// serveHTTP serves cfg on cfg.addr until stop. cfg.sec decides TLS and
// tokens. Public are the health checks (/healthz, /healthz/live,
// /healthz/ready), which orchestrators call without tokens, and
// /api/openapi.json, which describes the API as gRPC reflection does, and a
// coordinator's dashboard files; the REST API answers for itself, as the
// coordinator's RPCs do; /metrics and /debug/pprof need a read token when
// tokens are on, since they tell a caller as much as the read RPCs do.
func serveHTTP(cfg httpConfig) (*httpServer, error) {
	guarded := http.NewServeMux()
	guarded.Handle("GET /metrics", promhttp.HandlerFor(cfg.reg, promhttp.HandlerOpts{Registry: cfg.reg}))
	if cfg.pprof {
		guarded.HandleFunc("/debug/pprof/", pprof.Index)
		guarded.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		guarded.HandleFunc("/debug/pprof/profile", pprof.Profile)
		guarded.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		guarded.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	guard := auth.NewHTTPGuard(auth.HTTPGuardConfig{Authenticator: cfg.sec.authn, Need: auth.AccessRead, Logger: cfg.log})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /healthz/live", func(w http.ResponseWriter, _ *http.Request) {
		writeHealth(w, nil)
	})
	mux.HandleFunc("GET /healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		var err error
		if cfg.ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			err = cfg.ready(ctx)
			cancel()
		}
		writeHealth(w, err)
	})
	if cfg.api != nil {
		mux.Handle("/api/v1/", cfg.api.handler)
		mux.HandleFunc("GET /api/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, tasker.OpenAPI())
		})
	}
	if cfg.api != nil {
		// The dashboard's files hold no data (it reads everything through
		// the API, with the token it asks for), and a browser cannot send a
		// token to load a page: they are public. /metrics and pprof keep
		// the guard.
		mux.Handle("GET /metrics", guard.Wrap(guarded))
		mux.Handle("/debug/pprof/", guard.Wrap(guarded))
		mux.Handle("/", web.Handler())
	} else {
		mux.Handle("/", guard.Wrap(guarded))
	}

	lis, err := listenTCP("--http-listen", cfg.addr)
	if err != nil {
		return nil, err
	}
	h := &httpServer{
		addr: lis.Addr().String(),
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: cfg.sec.tls},
		done: make(chan struct{}),
	}
	if cfg.api != nil {
		// Streams never end by themselves; unary calls are left to finish.
		h.srv.RegisterOnShutdown(cfg.api.endStreams)
	}
	go func() {
		defer close(h.done)
		var err error
		if cfg.sec.tls != nil {
			// The certificate is in TLSConfig already.
			err = h.srv.ServeTLS(lis, "", "")
		} else {
			err = h.srv.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.log.Error("http server stopped", "err", err)
		}
	}()
	cfg.log.Info("http serving", "addr", h.addr, "api", cfg.api != nil, "pprof", cfg.pprof, "tls", cfg.sec.tls != nil, "tokens", cfg.sec.authn != nil)
	return h, nil
}

// health is the body of /healthz/live and /healthz/ready.
type health struct {
	Status string `json:"status"`
	// Reason says why a check failed.
	Reason string `json:"reason,omitempty"`
}

// writeHealth answers a health check: 200 {"status":"ok"}, or 503 with
// what is wrong.
func writeHealth(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	body := health{Status: "ok"}
	if err != nil {
		body = health{Status: "unavailable", Reason: err.Error()}
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
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
