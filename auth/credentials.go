package auth

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// bearer attaches a token to every call; see BearerToken.
type bearer struct {
	value      string
	requireTLS bool
}

// BearerToken returns per-RPC credentials sending "authorization: Bearer
// <token>" on every call (grpc.WithPerRPCCredentials). With requireTLS, gRPC
// refuses to send the token over a connection without transport security;
// pass false only for plaintext on loopback.
func BearerToken(token string, requireTLS bool) credentials.PerRPCCredentials {
	return &bearer{value: "Bearer " + token, requireTLS: requireTLS}
}

func (b *bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	// A new map each time: gRPC owns what it is handed.
	return map[string]string{AuthorizationHeader: b.value}, nil
}

func (b *bearer) RequireTransportSecurity() bool { return b.requireTLS }
