package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// MinTLSVersion is the oldest TLS version served or spoken: TLS 1.2, the
// oldest without known protocol breaks.
const MinTLSVersion = tls.VersionTLS12

// LoadCertPool reads PEM CA certificates from every file into one pool.
func LoadCertPool(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", f)
		}
	}
	return pool, nil
}

// LoadKeyPair reads a PEM certificate chain and its private key.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	switch {
	case certFile == "" && keyFile == "":
		return tls.Certificate{}, errors.New("no certificate: give both a certificate and a key file")
	case certFile == "":
		return tls.Certificate{}, fmt.Errorf("key file %s given without its certificate", keyFile)
	case keyFile == "":
		return tls.Certificate{}, fmt.Errorf("certificate %s given without its key file", certFile)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// ServerTLS is the tls.Config of a server presenting cert. With clientCAs
// set, client certificates are checked against them under mode (for example
// tls.RequireAndVerifyClientCert, or tls.VerifyClientCertIfGiven when only
// some methods need one; see GuardConfig.CertRoots).
func ServerTLS(cert tls.Certificate, clientCAs *x509.CertPool, mode tls.ClientAuthType) *tls.Config {
	cfg := &tls.Config{MinVersion: MinTLSVersion, Certificates: []tls.Certificate{cert}}
	if clientCAs != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCAs, mode
	}
	return cfg
}

// ClientTLS is the tls.Config of a client that verifies servers against
// roots (nil: the system roots) and presents cert when one is given. The
// server name is left to gRPC, which takes it from the dialled address.
func ClientTLS(roots *x509.CertPool, cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{MinVersion: MinTLSVersion, RootCAs: roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// VerifyPeerCert checks that the caller of a gRPC call on ctx presented a
// TLS client certificate that chains to roots. The handshake may have
// accepted certificates from a wider pool (API clients and executors under
// different CAs), so the chain is verified again against roots alone. A
// missing certificate wraps ErrUnauthenticated, one from another CA
// ErrPermissionDenied.
func VerifyPeerCert(ctx context.Context, roots *x509.CertPool) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return unauthenticatedf("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return unauthenticatedf("a TLS client certificate is required, and this connection is not TLS")
	}
	certs := info.State.PeerCertificates
	if len(certs) == 0 {
		return unauthenticatedf("a TLS client certificate is required")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return deniedf("client certificate %q does not chain to the CA this call needs: %w", certs[0].Subject.CommonName, err)
	}
	return nil
}

// ErrPlaintextNotLoopback is wrapped by CheckPlaintextListen.
var ErrPlaintextNotLoopback = errors.New("refusing to serve plaintext gRPC on a non-loopback address")

// CheckPlaintextListen allows serving without TLS only on a loopback
// address (127.0.0.0/8, ::1 or localhost), where nobody else on the network
// can read tokens or task data off the wire. Any other address, including
// 0.0.0.0, an empty host and hostnames, is refused.
func CheckPlaintextListen(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", address, err)
	}
	if isLoopbackHost(host) {
		return nil
	}
	return fmt.Errorf("%w %q", ErrPlaintextNotLoopback, address)
}
