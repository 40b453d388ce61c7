package executor

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Config configures an Executor. Zero values take the documented defaults,
// so Config{} is a working executor that waits for a coordinator to dial it.
type Config struct {
	// ID names this executor to coordinators and in results; it should be
	// stable for the life of the process. Default: a random UUID.
	ID string
	// Capacity is the most steps run at once. The coordinator never sends
	// more than this; a higher value lets one executor absorb more parallel
	// work at the price of more concurrent load on what the handlers call.
	// Default 16.
	Capacity int
	// Coordinator is the host:port of the coordinator to register with.
	// Empty means don't register: the coordinator (or a test) must dial the
	// executor by itself, and late results can only travel on a new stream.
	Coordinator string
	// Coordinators are further coordinators to register with, when several
	// share one database. Each gets its own stream; the executor's capacity
	// is split between those connected by demand (each keeps what it has
	// running here plus a fair part of the free slots, announced in
	// heartbeats whenever it changes), and never more than Capacity steps
	// run at once: a step sent on a share just lowered waits for a slot.
	Coordinators []string
	// AdvertiseAddress is the host:port the coordinator should dial. Default:
	// the listener's address, which is only right when that address is
	// reachable from the coordinator (not 0.0.0.0 or [::]).
	AdvertiseAddress string
	// Language is reported by Describe. Default "go".
	Language string
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// DialOptions are used for the coordinator connection. Default:
	// insecure transport credentials.
	DialOptions []grpc.DialOption
	// ServerOptions are passed to the executor's gRPC server.
	ServerOptions []grpc.ServerOption
	// Secret, when set, must be sent by every caller of Describe and
	// Execute as "authorization: Bearer <secret>" metadata (compared in
	// constant time); other callers get Unauthenticated. Health checks and
	// reflection stay open. An executor reachable from other hosts needs
	// this or mutual TLS (through ServerOptions), or anyone who can reach
	// it can feed it steps. At least MinSecretLength characters.
	Secret string
	// RegisterInterval is how often the executor re-registers while no
	// Execute stream is open; shorter finds a restarted coordinator sooner
	// at the price of more calls to one that is down. Default 1s.
	RegisterInterval time.Duration
	// HeartbeatInterval is how often a heartbeat goes down each open stream
	// after the first one, which is sent as soon as the stream opens; shorter
	// lets the coordinator notice a hung executor sooner. Default 5s.
	HeartbeatInterval time.Duration
	// ShutdownTimeout is how long Serve waits for running handlers once its
	// context ends; after it the handlers' contexts are cancelled. Default 30s.
	ShutdownTimeout time.Duration
	// DeliveryTimeout is how long Serve, at shutdown, keeps trying to deliver
	// results that finished while no stream could take them. Default 10s.
	DeliveryTimeout time.Duration
	// Registerer receives the executor's Prometheus metrics; default a
	// private registry (kept but not exported).
	Registerer prometheus.Registerer
	// TracerProvider traces handler runs as children of the coordinator's
	// attempt spans; default a no-op provider (tracing off).
	TracerProvider trace.TracerProvider
	// MaxResultBytes bounds a handler's encoded results; larger ones are
	// reported as a permanent ResultTooLarge failure instead of being sent,
	// since a message the coordinator cannot read would break the stream
	// for every step on it. Default 16 MiB.
	MaxResultBytes int
	// MaxReceiveBytes bounds one message from a coordinator (an
	// ExecuteStep carries the task's context and its parents' results, so
	// it can be far larger than any one of them). It is reported in
	// Describe, and a coordinator fails a step whose request would be
	// larger (InputTooLarge) instead of sending it, since a message over
	// the limit would end the stream and every attempt in flight on it.
	// Default 64 MiB. It overrides a grpc.MaxRecvMsgSize in ServerOptions.
	MaxReceiveBytes int
}

// Defaults, exported so callers can describe them (for example in --help).
const (
	DefaultCapacity          = 16
	DefaultLanguage          = "go"
	DefaultRegisterInterval  = time.Second
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultDeliveryTimeout   = 10 * time.Second
	DefaultMaxResultBytes    = 16 << 20
	DefaultMaxReceiveBytes   = 64 << 20
)

// ErrInvalidConfig is wrapped by New when a Config field is out of range.
var ErrInvalidConfig = errors.New("invalid executor config")

// withDefaults validates cfg and fills in defaults, so the rest of the
// package never has to care about zero values.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Capacity < 0 || cfg.Capacity > math.MaxInt32 {
		return cfg, fmt.Errorf("%w: capacity %d out of range 1..%d", ErrInvalidConfig, cfg.Capacity, math.MaxInt32)
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"register interval", cfg.RegisterInterval},
		{"heartbeat interval", cfg.HeartbeatInterval},
		{"shutdown timeout", cfg.ShutdownTimeout},
		{"delivery timeout", cfg.DeliveryTimeout},
	}
	for _, d := range durations {
		if d.d < 0 {
			return cfg, fmt.Errorf("%w: %s %s is negative", ErrInvalidConfig, d.name, d.d)
		}
	}
	if cfg.ID == "" {
		cfg.ID = uuid.NewString()
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.Language == "" {
		cfg.Language = DefaultLanguage
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.DialOptions) == 0 {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if cfg.RegisterInterval == 0 {
		cfg.RegisterInterval = DefaultRegisterInterval
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.DeliveryTimeout == 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = tracenoop.NewTracerProvider()
	}
	if cfg.Secret != "" && len(cfg.Secret) < MinSecretLength {
		return cfg, fmt.Errorf("%w: secret is %d characters; use at least %d", ErrInvalidConfig, len(cfg.Secret), MinSecretLength)
	}
	if cfg.MaxResultBytes < 0 {
		return cfg, fmt.Errorf("%w: max result bytes %d is negative", ErrInvalidConfig, cfg.MaxResultBytes)
	}
	if cfg.MaxResultBytes == 0 {
		cfg.MaxResultBytes = DefaultMaxResultBytes
	}
	if cfg.MaxReceiveBytes < 0 || cfg.MaxReceiveBytes > math.MaxInt32 {
		return cfg, fmt.Errorf("%w: max receive bytes %d out of range 1..%d", ErrInvalidConfig, cfg.MaxReceiveBytes, math.MaxInt32)
	}
	if cfg.MaxReceiveBytes == 0 {
		cfg.MaxReceiveBytes = DefaultMaxReceiveBytes
	}
	return cfg, nil
}

// coordinators lists every coordinator address to register with, without
// repeats.
func (cfg Config) coordinators() []string {
	var out []string
	for _, c := range append([]string{cfg.Coordinator}, cfg.Coordinators...) {
		if c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// isNoopTracing reports whether tp is OpenTelemetry's no-op provider, the
// default when Config.TracerProvider is nil.
func isNoopTracing(tp trace.TracerProvider) bool {
	_, ok := tp.(tracenoop.TracerProvider)
	return ok
}
