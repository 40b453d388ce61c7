package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Public method prefixes any server may leave open: health checks are made
// by load balancers and orchestrators that hold no token, and reflection
// only describes the API, which is public anyway.
const (
	HealthService          = "/grpc.health.v1.Health/"
	ReflectionService      = "/grpc.reflection.v1.ServerReflection/"
	ReflectionAlphaService = "/grpc.reflection.v1alpha.ServerReflection/"
)

// GuardConfig says who may call which method of one gRPC server.
type GuardConfig struct {
	// Authenticator checks bearer tokens; nil turns tokens off, and every
	// caller then acts as an anonymous principal granted all namespaces.
	Authenticator Authenticator
	// Methods maps full method names ("/pkg.Service/Method") to the access
	// they need. A method neither here nor in Public is refused, so a method
	// added later is closed until someone decides who may call it.
	Methods map[string]Access
	// Public lists full method names, or service prefixes ending in "/",
	// that need no token.
	Public []string
	// CertRoots, when set, makes every method that needs CertAccess also
	// need a TLS client certificate chaining to these roots: transport
	// proof that the caller is one of ours (an executor), on top of any
	// token. Serve with TLS that requests client certificates.
	CertRoots *x509.CertPool
	// CertAccess is the access class CertRoots guards; AccessExecutor in the
	// coordinator.
	CertAccess Access
	// Logger, when set, receives one line per refused call (method, code,
	// reason) at info level, for auditing; nil logs nothing.
	Logger *slog.Logger
}

// Guard authenticates and authorizes calls to a gRPC server through its
// interceptors, and hands the principal to handlers in the context (see
// FromContext) for the checks only they can make, such as namespaces.
type Guard struct {
	cfg       GuardConfig
	anonymous *Principal
}

// NewGuard checks cfg and builds a Guard.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if cfg.CertRoots != nil && cfg.CertAccess == AccessNone {
		return nil, errors.New("auth: GuardConfig.CertRoots needs CertAccess")
	}
	for m, a := range cfg.Methods {
		if a == AccessNone {
			return nil, fmt.Errorf("auth: method %s has no access class", m)
		}
	}
	return &Guard{cfg: cfg, anonymous: &Principal{Name: "anonymous", Namespaces: []string{AllNamespaces}}}, nil
}

// TokensEnabled reports whether callers must present tokens.
func (g *Guard) TokensEnabled() bool { return g.cfg.Authenticator != nil }

// ServerOptions installs the Guard's interceptors on a grpc.Server.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.Unary), grpc.ChainStreamInterceptor(g.Stream)}
}

// Unary is the unary server interceptor.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := g.check(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the stream server interceptor.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := g.check(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
}

// principalStream hands the handler the context that carries the principal.
type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// check decides one call and returns ctx with the caller's principal.
func (g *Guard) check(ctx context.Context, method string) (context.Context, error) {
	out, err := g.decide(ctx, method)
	if err != nil && g.cfg.Logger != nil {
		g.cfg.Logger.InfoContext(ctx, "call refused", "method", method, "code", status.Code(err).String(), "reason", status.Convert(err).Message())
	}
	return out, err
}

func (g *Guard) decide(ctx context.Context, method string) (context.Context, error) {
	if g.public(method) {
		return ctx, nil
	}
	need, ok := g.cfg.Methods[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "%s is not open to any caller", method)
	}
	if g.cfg.CertRoots != nil && need == g.cfg.CertAccess {
		if err := VerifyPeerCert(ctx, g.cfg.CertRoots); err != nil {
			return nil, Status(fmt.Errorf("%s: %w", shortMethod(method), err))
		}
	}
	if g.cfg.Authenticator == nil {
		return NewContext(ctx, g.anonymous), nil
	}
	token, err := TokenFromContext(ctx)
	if err != nil {
		return nil, Status(err)
	}
	p, err := g.cfg.Authenticator.Authenticate(ctx, token)
	if err != nil {
		return nil, Status(err)
	}
	if err := p.CheckAccess(need, shortMethod(method)); err != nil {
		return nil, Status(err)
	}
	return NewContext(ctx, p), nil
}

func (g *Guard) public(method string) bool {
	for _, p := range g.cfg.Public {
		if method == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(method, p)) {
			return true
		}
	}
	return false
}

// shortMethod is the method name without its package, for messages.
func shortMethod(full string) string {
	return full[strings.LastIndex(full, "/")+1:]
}

// Status maps errors wrapping ErrUnauthenticated and ErrPermissionDenied to
// gRPC statuses with the same message; other errors are returned unchanged.
func Status(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	default:
		return err
	}
}
