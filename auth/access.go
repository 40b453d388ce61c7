package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Access is what a principal may do. Write implies read; executor is a class
// of its own so an executor's credentials cannot start or read work and an
// API caller's cannot pose as an executor.
type Access int

// The access classes. AccessNone is the zero value so a forgotten field never
// grants anything.
const (
	AccessNone Access = iota
	AccessRead
	AccessWrite
	AccessExecutor
)

// AllNamespaces, as a granted namespace, grants every namespace.
const AllNamespaces = "*"

// ErrUnauthenticated is wrapped by every failure to establish who the caller
// is: no token, a token nobody issued, a bad signature, an expired token.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrPermissionDenied is wrapped by every failure of a known caller to hold
// the access or namespace a call needs.
var ErrPermissionDenied = errors.New("permission denied")

// ErrUnknownToken is returned by an Authenticator for a token it does not
// recognise, so a chain can try the next one. It matches
// ErrUnauthenticated.
var ErrUnknownToken error = &denial{kind: ErrUnauthenticated, err: errors.New("token not recognised")}

// denial is an auth failure whose message stands on its own (the gRPC code
// already says unauthenticated or permission denied) and which matches its
// kind, ErrUnauthenticated or ErrPermissionDenied, under errors.Is.
type denial struct {
	kind error
	err  error
}

func (d *denial) Error() string        { return d.err.Error() }
func (d *denial) Unwrap() error        { return d.err }
func (d *denial) Is(target error) bool { return target == d.kind }

// unauthenticatedf formats an error matching ErrUnauthenticated; %w works.
func unauthenticatedf(format string, args ...any) error {
	return &denial{kind: ErrUnauthenticated, err: fmt.Errorf(format, args...)}
}

// deniedf formats an error matching ErrPermissionDenied; %w works.
func deniedf(format string, args ...any) error {
	return &denial{kind: ErrPermissionDenied, err: fmt.Errorf(format, args...)}
}

// ParseAccess reads the names used in tokens files and JWT claims.
func ParseAccess(s string) (Access, error) {
	switch s {
	case "read":
		return AccessRead, nil
	case "write":
		return AccessWrite, nil
	case "executor":
		return AccessExecutor, nil
	default:
		return AccessNone, fmt.Errorf("access %q: want read, write or executor", s)
	}
}

// String is the name ParseAccess reads.
func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	case AccessExecutor:
		return "executor"
	default:
		return "none"
	}
}

// Allows reports whether holding a permits a call that needs need.
func (a Access) Allows(need Access) bool {
	switch need {
	case AccessNone:
		return true
	case AccessRead:
		return a == AccessRead || a == AccessWrite
	default:
		return a == need
	}
}

// Principal is who a verified token stands for.
type Principal struct {
	// Name identifies the token's holder in logs and error messages; it is
	// never the secret itself.
	Name string
	// Namespaces granted; AllNamespaces grants all. Executor principals
	// are not limited by namespace: they report results for whatever the
	// coordinator dispatched to them.
	Namespaces []string
	// Access is what the principal may do.
	Access Access
}

// AllowsAllNamespaces reports whether p was granted "*".
func (p *Principal) AllowsAllNamespaces() bool {
	return slices.Contains(p.Namespaces, AllNamespaces)
}

// AllowsNamespace reports whether p may act in namespace ns.
func (p *Principal) AllowsNamespace(ns string) bool {
	return p.AllowsAllNamespaces() || slices.Contains(p.Namespaces, ns)
}

// CheckNamespace returns an error wrapping ErrPermissionDenied, naming the
// principal, the namespace and what it was granted, unless p may act in ns.
func (p *Principal) CheckNamespace(ns string) error {
	if p.AllowsNamespace(ns) {
		return nil
	}
	return deniedf("%s is not granted namespace %q (granted: %s)", p, ns, p.grants())
}

// CheckAccess returns an error wrapping ErrPermissionDenied, naming what is
// missing, unless p's access allows need; what names the call.
func (p *Principal) CheckAccess(need Access, what string) error {
	if p.Access.Allows(need) {
		return nil
	}
	return deniedf("%s has %s access; %s needs %s access", p, p.Access, what, need)
}

// String names the principal for messages.
func (p *Principal) String() string { return fmt.Sprintf("token %q", p.Name) }

func (p *Principal) grants() string {
	if len(p.Namespaces) == 0 {
		return "none"
	}
	return strings.Join(p.Namespaces, ", ")
}

// validate checks what both token sources must hold.
func (p *Principal) validate() error {
	if p.Name == "" {
		return errors.New("name is empty")
	}
	if p.Access == AccessNone {
		return errors.New("access is missing: want read, write or executor")
	}
	if p.Access != AccessExecutor && len(p.Namespaces) == 0 {
		return fmt.Errorf("%s access needs namespaces (a list, or [\"*\"] for all)", p.Access)
	}
	if slices.Contains(p.Namespaces, "") {
		return errors.New("namespaces holds an empty name")
	}
	return nil
}

type principalKey struct{}

// NewContext returns ctx carrying p, as the Guard does for every call it
// lets through.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the Guard attached to ctx.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
