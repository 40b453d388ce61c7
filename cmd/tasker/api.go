package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tasker-go/tasker/auth"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// The REST/JSON API is the grpc-gateway generated from the proto's HTTP
// rules, calling the coordinator's own gRPC listener over a connection of
// its own. Every call therefore passes the coordinator's interceptors as a
// gRPC call would: the same tokens, access classes and namespace checks,
// and the same status codes, mapped to HTTP by the gateway's table.

// apiConfig is what the gateway needs from the coordinator it fronts.
type apiConfig struct {
	// target is the coordinator's gRPC listener, as the gateway dials it.
	target string
	// dial carries the transport security the listener wants (see
	// coordinatorSecurity.loopback).
	dial []grpc.DialOption
	// executorCAs, when set, are the roots an executor's client
	// certificate must chain to; the gateway checks the HTTP caller's
	// certificate against them for the executor methods, as the
	// coordinator checks a gRPC caller's (its own certificate, which the
	// gateway presents, would otherwise stand in for the caller's).
	executorCAs *x509.CertPool
	// maxRequestBytes bounds a request body, as --max-request-bytes bounds
	// a gRPC request (and with its default when zero): the gateway reads a
	// whole body before it calls.
	maxRequestBytes int
	reg             prometheus.Registerer
}

// defaultMaxRequestBytes is --max-request-bytes' default.
const defaultMaxRequestBytes = 8 << 20

// apiGateway serves CoordinatorService as JSON under /api/v1/.
type apiGateway struct {
	conn    *grpc.ClientConn
	handler http.Handler
	// streams is done once the HTTP server shuts down: every server stream
	// the gateway relays ends with it, where a unary call may finish.
	streams    context.Context
	endStreams context.CancelFunc
}

// executorMethod reports whether method needs the executor access class,
// and with mesh TLS an executor's certificate (coordinator.Security).
func executorMethod(method string) bool {
	switch method {
	case coordinatorv1.CoordinatorService_RegisterExecutor_FullMethodName,
		coordinatorv1.CoordinatorService_ReportStepResult_FullMethodName:
		return true
	}
	return false
}

// newAPIGateway builds the gateway; its connection to the coordinator is
// made lazily, so the gRPC listener need not serve yet. Close it when done.
func newAPIGateway(cfg apiConfig) (*apiGateway, error) {
	streams := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tasker_api_streams_open",
		Help: "Server streams (WatchTask, SubscribeEvents) the REST/JSON API is relaying to HTTP clients now.",
	})
	if err := cfg.reg.Register(streams); err != nil {
		return nil, fmt.Errorf("REST API metrics: %w", err)
	}
	g := &apiGateway{}
	g.streams, g.endStreams = context.WithCancel(context.Background())
	opts := append(slices.Clone(cfg.dial),
		grpc.WithChainUnaryInterceptor(checkExecutorCert(cfg.executorCAs)),
		grpc.WithChainStreamInterceptor(g.countStreams(streams)),
		// Answers are as large as the coordinator makes them (task results
		// are bounded by --max-result-bytes, a page of tasks by its size).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
	conn, err := grpc.NewClient(cfg.target, opts...)
	if err != nil {
		g.endStreams()
		return nil, fmt.Errorf("REST API: connect to %s: %w", cfg.target, err)
	}
	var mux *runtime.ServeMux
	queryCheck, err := newQueryCheck(func(w http.ResponseWriter, r *http.Request, err error) {
		_, out := runtime.MarshalerForRequest(mux, r)
		runtime.HTTPError(r.Context(), mux, out, w, r, err)
	})
	if err != nil {
		g.endStreams()
		_ = conn.Close()
		return nil, fmt.Errorf("REST API: %w", err)
	}
	mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			// Every field, defaults included, so a response has one shape;
			// an unknown field in a request is an error (400) rather than
			// silently dropped, since it is most likely a misspelling.
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		// Only Authorization reaches the coordinator (the gateway passes it
		// through by itself): no other header becomes gRPC metadata, so an
		// HTTP caller cannot set metadata a gRPC caller could not.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithErrorHandler(apiError),
		runtime.WithForwardResponseOption(openStream),
		runtime.WithMiddlewares(queryCheck),
	)
	if err := coordinatorv1.RegisterCoordinatorServiceHandlerClient(context.Background(), mux, coordinatorv1.NewCoordinatorServiceClient(conn)); err != nil {
		g.endStreams()
		_ = conn.Close()
		return nil, fmt.Errorf("REST API: %w", err)
	}
	limit := int64(cfg.maxRequestBytes)
	if limit <= 0 {
		limit = defaultMaxRequestBytes
	}
	g.conn = conn
	g.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		mux.ServeHTTP(&headerOnce{ResponseWriter: w}, r.WithContext(context.WithValue(r.Context(), httpTLSKey{}, r.TLS)))
	})
	return g, nil
}

// close closes the gateway's connection to the coordinator.
func (g *apiGateway) close() {
	if g != nil {
		g.endStreams()
		_ = g.conn.Close()
	}
}

// apiError writes a refused call as the gateway does (status from the
// gRPC code, body {"code", "message", "details"}), with the Bearer
// challenge /metrics answers with on 401 instead of the gateway's.
func apiError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, challengeWriter{w}, r, err)
}

type challengeWriter struct{ http.ResponseWriter }

func (w challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tasker"`)
	}
	w.ResponseWriter.WriteHeader(code)
}

// openStream sends a server stream's status and headers as soon as the
// stream starts. The gateway calls its response options once with no
// message when a stream starts, which is after the coordinator's gRPC
// headers: for SubscribeEvents, after the starting point is fixed. Left to
// the gateway, the headers would go out with the first message, so a
// client subscribing with fromNow could not tell when it may act and
// expect to see the events of its act.
func openStream(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	if m != nil {
		return nil
	}
	// What the gateway sets with the first message, for every stream here.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w).Flush()
}

// headerOnce drops a second WriteHeader: an error in a stream whose headers
// openStream sent makes the gateway write a status again, which net/http
// would log as superfluous; the error itself still goes out as the
// stream's last line.
type headerOnce struct {
	http.ResponseWriter
	wrote bool
}

func (w *headerOnce) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *headerOnce) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer (Flush).
func (w *headerOnce) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// httpTLSKey carries the HTTP request's TLS state to the gateway's client
// interceptors.
type httpTLSKey struct{}

// checkExecutorCert refuses an executor method unless the HTTP caller
// presented a certificate chaining to roots: the check the coordinator
// makes of a gRPC caller, with the same message. Nil roots check nothing.
func checkExecutorCert(roots *x509.CertPool) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if roots != nil && executorMethod(method) {
			p := &peer.Peer{}
			if st, _ := ctx.Value(httpTLSKey{}).(*tls.ConnectionState); st != nil {
				p.AuthInfo = credentials.TLSInfo{State: *st}
			}
			if err := auth.VerifyPeerCert(peer.NewContext(ctx, p), roots); err != nil {
				return auth.Status(fmt.Errorf("%s: %w", method[strings.LastIndex(method, "/")+1:], err))
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// countStreams keeps gauge at the number of server streams open, and
// ends them all when the gateway's streams end. Each counts until it ends
// (its Recv fails: at its end, or once the HTTP client went away) or its
// context is done, whichever comes first.
func (g *apiGateway) countStreams(gauge prometheus.Gauge) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, cancel := context.WithCancel(ctx)
		stopEnding := context.AfterFunc(g.streams, cancel)
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			stopEnding()
			cancel()
			return nil, err
		}
		gauge.Inc()
		done := sync.OnceFunc(func() {
			stopEnding()
			cancel()
			gauge.Dec()
		})
		stopCounting := context.AfterFunc(ctx, done)
		return &countedStream{ClientStream: s, done: func() {
			stopCounting()
			done()
		}}, nil
	}
}

type countedStream struct {
	grpc.ClientStream
	done func()
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.done()
	}
	return err
}

// loopbackTarget is where the gateway dials a gRPC listener bound to
// addr: addr itself, or the loopback address of its family when it is
// bound to every interface.
func loopbackTarget(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// loopbackTLS is the gateway's TLS towards the coordinator serving cert.
// It verifies the server by that exact certificate, not by a name: the
// gateway dials its own process, whose certificate it holds, at an address
// the certificate need not name (127.0.0.1 for a public name). The TLS
// handshake proves the server holds the certificate's key. With present,
// it shows the same certificate as its client certificate, for a listener
// that requires one of every caller.
func loopbackTLS(cert *tls.Certificate, present bool) (*tls.Config, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("REST API: the TLS key pair has no certificate")
	}
	own := cert.Certificate[0]
	cfg := &tls.Config{
		MinVersion: auth.MinTLSVersion,
		// Verification is VerifyConnection's pin below, which runs
		// whatever this says: the name check is what is skipped.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, own) {
				return errors.New("REST API: the coordinator's listener answered with another certificate than its own")
			}
			return nil
		},
	}
	if present {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// loopbackDial is the dial options of loopbackTLS.
func loopbackDial(cert *tls.Certificate, present bool) ([]grpc.DialOption, error) {
	cfg, err := loopbackTLS(cert, present)
	if err != nil {
		return nil, err
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}
