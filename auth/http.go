package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
)

// HTTPGuardConfig says who may use an HTTP server that sits beside a gRPC
// one (metrics, pprof, later a dashboard and a REST API).
type HTTPGuardConfig struct {
	// Authenticator checks bearer tokens, as GuardConfig.Authenticator
	// does; nil turns tokens off and every request acts as an anonymous
	// principal granted all namespaces.
	Authenticator Authenticator
	// Need is the access every guarded request needs.
	Need Access
	// Public lists exact paths that need no token, such as /healthz for
	// load balancers and orchestrators. Paths are compared as sent, so
	// "/healthz/../metrics" is not public.
	Public []string
	// Logger, when set, receives one line per refused request (method,
	// path, status, reason) at info level; nil logs nothing.
	Logger *slog.Logger
}

// HTTPGuard authenticates and authorizes HTTP requests with the same
// tokens as Guard, and hands the principal to handlers in the request
// context (see FromContext).
type HTTPGuard struct {
	cfg       HTTPGuardConfig
	anonymous *Principal
}

// NewHTTPGuard builds an HTTPGuard.
func NewHTTPGuard(cfg HTTPGuardConfig) *HTTPGuard {
	return &HTTPGuard{cfg: cfg, anonymous: &Principal{Name: "anonymous", Namespaces: []string{AllNamespaces}}}
}

// Wrap returns next behind the guard.
func (g *HTTPGuard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(g.cfg.Public, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		p, err := g.decide(r)
		if err != nil {
			g.refuse(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

func (g *HTTPGuard) decide(r *http.Request) (*Principal, error) {
	if g.cfg.Authenticator == nil {
		return g.anonymous, nil
	}
	token, err := bearerFrom(r.Header.Values("Authorization"), "the Authorization header", `"Authorization: Bearer <token>"`)
	if err != nil {
		return nil, err
	}
	p, err := g.cfg.Authenticator.Authenticate(r.Context(), token)
	if err != nil {
		return nil, err
	}
	if err := p.CheckAccess(g.cfg.Need, r.Method+" "+r.URL.Path); err != nil {
		return nil, err
	}
	return p, nil
}

// refuse answers 401 (with a Bearer challenge) when the caller is unknown
// and 403 when it lacks the access; anything else is a server fault.
func (g *HTTPGuard) refuse(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrUnauthenticated):
		code = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="tasker"`)
	case errors.Is(err, ErrPermissionDenied):
		code = http.StatusForbidden
	}
	if g.cfg.Logger != nil {
		g.cfg.Logger.InfoContext(r.Context(), "request refused", "method", r.Method, "path", r.URL.Path, "status", code, "reason", err.Error())
	}
	http.Error(w, fmt.Sprintf("%s: %v", http.StatusText(code), err), code)
}
