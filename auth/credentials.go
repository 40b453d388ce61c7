package auth

import (
	"context"
	"fmt"
	"net"
	"net/url"

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

// loopbackBearer attaches a token to every call that is either protected
// by TLS or made to a loopback address; see BearerTokenTLSOrLoopback.
type loopbackBearer struct {
	value string
}

// BearerTokenTLSOrLoopback returns per-RPC credentials sending
// "authorization: Bearer <token>" on every call made over TLS, or in
// plaintext to a loopback target (127.0.0.0/8, ::1, localhost), where no
// one else can read it off the wire. A call that would carry the token in
// plaintext anywhere else fails with Unauthenticated before it is sent.
// It suits a client whose connections are TLS or loopback, such as a
// coordinator dialling the executors that register with it.
func BearerTokenTLSOrLoopback(token string) credentials.PerRPCCredentials {
	return &loopbackBearer{value: "Bearer " + token}
}

func (b *loopbackBearer) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	if !ok || credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity) != nil {
		// gRPC passes the audience "https://<authority>/<service>".
		host := ""
		if len(uri) > 0 {
			if u, err := url.Parse(uri[0]); err == nil {
				host = u.Hostname()
			}
		}
		if !isLoopbackHost(host) {
			return nil, fmt.Errorf("refusing to send a bearer token in plaintext to %q: use TLS, or a loopback address", host)
		}
	}
	return map[string]string{AuthorizationHeader: b.value}, nil
}

// RequireTransportSecurity is false: GetRequestMetadata decides, since
// gRPC's own check would refuse loopback plaintext too.
func (b *loopbackBearer) RequireTransportSecurity() bool { return false }

// isLoopbackHost reports whether host (a name or an IP, without port) is
// this machine's loopback: localhost, 127.0.0.0/8 or ::1.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
