package auth

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/metadata"
)

// Authenticator turns a bearer token into the principal it stands for.
type Authenticator interface {
	// Authenticate returns token's principal, or an error wrapping
	// ErrUnknownToken when token is not one it issued, or another error
	// wrapping ErrUnauthenticated when it is but cannot be accepted (bad
	// signature, expired). The principal may be shared between calls and
	// must not be modified.
	Authenticate(ctx context.Context, token string) (*Principal, error)
}

// Chain tries each Authenticator in order, so a tokens file and a JWT key
// can be used side by side. The first to accept a token wins; the first to
// reject one it recognises (an expired JWT) decides the error.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context, token string) (*Principal, error) {
	for _, a := range c {
		p, err := a.Authenticate(ctx, token)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, ErrUnknownToken) {
			return nil, err
		}
	}
	return nil, ErrUnknownToken
}

// AuthorizationHeader is the metadata key that carries the bearer token.
const AuthorizationHeader = "authorization"

// TokenFromContext reads "authorization: Bearer <token>" from the incoming
// gRPC metadata of ctx.
func TokenFromContext(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	return bearerFrom(md.Get(AuthorizationHeader), "authorization metadata", `metadata "authorization: Bearer <token>"`)
}

// bearerFrom reads the token out of the values of an authorization header.
// where names the header and want says how to send a token, for errors.
func bearerFrom(vals []string, where, want string) (string, error) {
	switch len(vals) {
	case 0:
		return "", unauthenticatedf("no bearer token: send %s", want)
	case 1:
	default:
		return "", unauthenticatedf("%d authorization values; send exactly one", len(vals))
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", unauthenticatedf(`%s must be "Bearer <token>"`, where)
	}
	return token, nil
}
