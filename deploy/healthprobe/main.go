// Command tasker-healthprobe asks a Tasker coordinator or executor for its
// grpc.health.v1 status and exits 0 only when it is SERVING.
//
// The container image is distroless: it has no shell, curl or grpcurl, so a
// Docker or Compose healthcheck can only run a binary that ships in the
// image. Kubernetes needs none (its gRPC and HTTP probes run in the
// kubelet); this is for Compose and plain Docker.
//
// Exit status: 0 SERVING, 1 anything else (NOT_SERVING, unreachable, timed
// out), 2 bad flags.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tasker-go/tasker/auth"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// probeFlags mirror the tasker TLS flags so a probe can reach a server
// started with the same files.
type probeFlags struct {
	addr, service, ca, cert, key, serverName string
	timeout                                  time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f probeFlags
	fs := flag.NewFlagSet("tasker-healthprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:7070", "host:port of the coordinator or executor gRPC listener")
	fs.StringVar(&f.service, "service", "", "service name to check; empty asks for the server as a whole")
	fs.DurationVar(&f.timeout, "timeout", 3*time.Second, "give up after this long")
	fs.StringVar(&f.ca, "tls-ca", "", "PEM CA bundle to verify the server with; any TLS flag turns TLS on")
	fs.StringVar(&f.cert, "tls-cert", "", "PEM client certificate, for servers that require one (--tls-client-ca, or an executor with --tls-ca)")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.serverName, "tls-server-name", "", "name to verify in the server certificate (default: the host of --addr)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tasker-healthprobe: unexpected arguments %q\n", fs.Args())
		return 2
	}
	status, err := check(ctx, f)
	if err != nil {
		fmt.Fprintf(stderr, "tasker-healthprobe: %s: %v\n", f.addr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s\n", f.addr, status)
	if status != healthpb.HealthCheckResponse_SERVING {
		return 1
	}
	return 0
}

func check(ctx context.Context, f probeFlags) (healthpb.HealthCheckResponse_ServingStatus, error) {
	creds, err := transport(f)
	if err != nil {
		return 0, err
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: f.service})
	if err != nil {
		return 0, fmt.Errorf("health check: %w", err)
	}
	return resp.GetStatus(), nil
}

// transport is plaintext unless a TLS flag is given, matching how tasker
// itself decides.
func transport(f probeFlags) (credentials.TransportCredentials, error) {
	if f.ca == "" && f.cert == "" && f.key == "" {
		return insecure.NewCredentials(), nil
	}
	var cert *tls.Certificate
	if f.cert != "" || f.key != "" {
		c, err := auth.LoadKeyPair(f.cert, f.key)
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	// No --tls-ca means the system roots, as for tasker's own clients.
	var roots *x509.CertPool
	if f.ca != "" {
		pool, err := auth.LoadCertPool(f.ca)
		if err != nil {
			return nil, err
		}
		roots = pool
	}
	cfg := auth.ClientTLS(roots, cert)
	cfg.ServerName = f.serverName
	return credentials.NewTLS(cfg), nil
}
