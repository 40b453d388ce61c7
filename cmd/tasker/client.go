package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/auth"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// client is an open connection to the coordinator.
type client struct {
	conn *grpc.ClientConn
	coordinatorv1.CoordinatorServiceClient
}

// Close releases the connection.
func (c *client) Close() error { return c.conn.Close() }

// tlsFiles are the global --tls-ca, --tls-cert and --tls-key flags. For the
// CLI they configure its connection to the coordinator; the coordinator and
// executor commands serve with the certificate and use the CA to verify
// their peers (see serve.go).
type tlsFiles struct {
	ca, cert, key string
}

// enabled reports whether any TLS file was given: the CLI then speaks TLS.
func (f tlsFiles) enabled() bool { return f.ca != "" || f.cert != "" || f.key != "" }

// roots is the CA pool to verify servers with; nil means the system roots.
func (f tlsFiles) roots() (*x509.CertPool, error) {
	if f.ca == "" {
		return nil, nil
	}
	pool, err := auth.LoadCertPool(f.ca)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	return pool, nil
}

// keyPair loads --tls-cert and --tls-key; nil when neither is given.
func (f tlsFiles) keyPair() (*tls.Certificate, error) {
	if f.cert == "" && f.key == "" {
		return nil, nil
	}
	c, err := auth.LoadKeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &c, nil
}

// clientCreds are the transport credentials of a client: TLS verifying the
// server against --tls-ca (or the system roots) and presenting --tls-cert
// when given, plaintext when no TLS file is.
func (f tlsFiles) clientCreds() (credentials.TransportCredentials, error) {
	if !f.enabled() {
		return insecure.NewCredentials(), nil
	}
	roots, err := f.roots()
	if err != nil {
		return nil, err
	}
	cert, err := f.keyPair()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(auth.ClientTLS(roots, cert)), nil
}

// bearerToken is --token, or TASKER_TOKEN when the flag is not given. The
// flag has no environment default so --help never prints the secret.
func (g *globals) bearerToken() string {
	if g.token != "" {
		return g.token
	}
	return g.env.getenv(envToken)
}

// coordinatorDialOptions are the options for calling the coordinator, from
// the CLI or from an executor: transport credentials from the TLS flags and
// the bearer token on every call when one is set.
func coordinatorDialOptions(files tlsFiles, token string) ([]grpc.DialOption, error) {
	creds, err := files.clientCreds()
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	switch {
	case token == "":
	case files.enabled():
		opts = append(opts, grpc.WithPerRPCCredentials(auth.BearerToken(token, true)))
	default:
		// Without TLS a token is sent only to a loopback address, where
		// nobody on the network can read it.
		opts = append(opts, grpc.WithPerRPCCredentials(auth.BearerTokenTLSOrLoopback(token)))
	}
	return opts, nil
}

// maxResponseBytes bounds one message the CLI receives. It is far above
// gRPC's default of 4 MiB because the coordinator's limits are its own to
// set: a task with a large context, or a page of tasks with all their
// steps, must not fail on the client after the coordinator accepted it.
const maxResponseBytes = 1 << 30

// dial opens the connection to the coordinator. It is the one place that
// picks the CLI's transport credentials and token.
func (g *globals) dial() (*client, error) {
	if g.coordinator == "" {
		return nil, errors.New("--coordinator is empty")
	}
	opts, err := coordinatorDialOptions(g.tls, g.bearerToken())
	if err != nil {
		return nil, err
	}
	opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes)))
	conn, err := grpc.NewClient(g.coordinator, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial coordinator %s: %w", g.coordinator, err)
	}
	return &client{conn: conn, CoordinatorServiceClient: coordinatorv1.NewCoordinatorServiceClient(conn)}, nil
}

// coordinatorTarget gives addr the coordinator's default port when it has
// none: gRPC would otherwise dial port 443, so "--coordinator localhost"
// would fail against a coordinator on localhost:7070 with a confusing
// message. gRPC targets with a scheme (dns:///, unix:) are left alone.
func coordinatorTarget(addr string) string {
	if addr == "" || strings.Contains(addr, "://") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	host, port, err := net.SplitHostPort(addr)
	switch {
	case err == nil && port != "":
		return addr
	case err == nil:
		// "host:" has an empty port.
	case net.ParseIP(addr) != nil:
		host = addr // a bare IPv6 address such as ::1
	default:
		host = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	}
	return net.JoinHostPort(host, defaultPort)
}

// unary bounds one unary call by --timeout.
func (g *globals) unary(ctx context.Context) (context.Context, context.CancelFunc) {
	if g.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, g.timeout)
}

// withClient dials, runs fn and closes the connection; errors from fn that
// carry a gRPC status are turned into rpcError so they print as
// "<message> (<code>)", or into unreachableError when the coordinator could
// not be reached at all.
func (g *globals) withClient(ctx context.Context, fn func(ctx context.Context, c *client) error) error {
	c, err := g.dial()
	if err != nil {
		return err
	}
	err = fn(ctx, c)
	if ue := g.unreachable(c, err); ue != nil {
		err = ue
	}
	if cerr := c.Close(); err == nil && cerr != nil {
		return fmt.Errorf("close connection: %w", cerr)
	}
	return rpcErr(err)
}

// unreachable turns err into an unreachableError when it is a call's
// status saying the coordinator could not be reached; otherwise nil.
func (g *globals) unreachable(c *client, err error) *unreachableError {
	se, ok := err.(interface{ GRPCStatus() *status.Status })
	if !ok {
		return nil
	}
	st := se.GRPCStatus()
	reason, ok := unreachableReason(g.coordinator, st, c.conn.GetState())
	if !ok {
		return nil
	}
	return &unreachableError{target: g.coordinator, reason: reason, st: st}
}

// unreachableError is a call that failed because no connection to the
// coordinator could be made. It says where the CLI looked and how to point
// it elsewhere, which a raw dial error does not.
type unreachableError struct {
	target, reason string
	st             *status.Status
}

func (e *unreachableError) Error() string {
	msg := fmt.Sprintf("cannot reach coordinator at %s (%s)", e.target, e.reason)
	if strings.HasPrefix(e.reason, "TLS") {
		return msg + ": check --tls-ca, --tls-cert and --tls-key against how the coordinator serves"
	}
	return msg + ": is `tasker coordinator` or `tasker dev` running? set --coordinator or " + envCoordinator
}

// GRPCStatus keeps the status visible to status.Code.
func (e *unreachableError) GRPCStatus() *status.Status { return e.st }

// unreachableReason says why a call failed to reach the coordinator at
// target, or reports false when the failure came from a coordinator that
// answered. state is the connection's state after the call.
func unreachableReason(target string, st *status.Status, state connectivity.State) (string, bool) {
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
	case codes.DeadlineExceeded:
		// A deadline that passed while still connecting.
		if state == connectivity.Connecting || state == connectivity.TransientFailure {
			return "no connection within --timeout", true
		}
		return "", false
	default:
		return "", false
	}
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	_, dialErr, dialing := strings.Cut(msg, "Error while dialing: ")
	switch {
	case strings.Contains(msg, "connection refused"):
		return "connection refused", true
	case strings.Contains(msg, "produced zero addresses"), strings.Contains(msg, "no such host"):
		return fmt.Sprintf("unknown host %q", host), true
	case strings.Contains(msg, "authentication handshake failed"):
		_, detail, _ := strings.Cut(msg, "authentication handshake failed: ")
		return "TLS handshake failed: " + strings.TrimSuffix(detail, `"`), true
	case dialing:
		return strings.TrimSuffix(dialErr, `"`), true
	case strings.Contains(msg, "name resolver error"):
		return msg, true
	}
	return "", false
}

// rpcError is a failed call to the coordinator. Its text is the status
// message followed by the code, which is what users and scripts grep for.
type rpcError struct {
	st *status.Status
}

func (e *rpcError) Error() string {
	return fmt.Sprintf("%s (%s)", explainLimit(e.st), e.st.Code())
}

// tooLarge is how gRPC refuses a message over a receiver's limit. The
// coordinator's limit on requests is its --max-request-bytes.
var tooLarge = regexp.MustCompile(`^grpc: received message larger than max \((\d+) vs\. (\d+)\)$`)

// limitName matches the name of a coordinator limit the coordinator puts in
// its messages, "(max_context_bytes)", which is its --max-context-bytes
// flag.
var limitName = regexp.MustCompile(`\(max_([a-z_]+)\)`)

// explainLimit is the message of st, saying which coordinator flag sets the
// limit a refusal names, so the message says what to change.
func explainLimit(st *status.Status) string {
	msg := st.Message()
	if st.Code() != codes.ResourceExhausted {
		return msg
	}
	if m := tooLarge.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("the request is %s bytes, over the coordinator's limit of %s bytes (its --max-request-bytes flag)", m[1], m[2])
	}
	return limitName.ReplaceAllStringFunc(msg, func(m string) string {
		name := strings.ReplaceAll(limitName.FindStringSubmatch(m)[1], "_", "-")
		return "(the coordinator's --max-" + name + " flag)"
	})
}

// GRPCStatus lets status.FromError and status.Code see through the wrapper.
func (e *rpcError) GRPCStatus() *status.Status { return e.st }

// rpcErr wraps err in an rpcError when it is a gRPC status error itself,
// and leaves other errors (wrapped ones included, which already say what
// they are about) and nil alone.
func rpcErr(err error) error {
	se, ok := err.(interface{ GRPCStatus() *status.Status })
	if !ok {
		return err
	}
	switch err.(type) {
	case *rpcError, *unreachableError:
		return err
	}
	return &rpcError{st: se.GRPCStatus()}
}

// outputFlag is the -o flag shared by commands that can print JSON.
type outputFlag struct {
	format string
}

func (o *outputFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "", `output format: "" for a table, "json" for JSON (one object per line)`)
}

// json reports whether JSON output was asked for, rejecting unknown formats.
func (o *outputFlag) json() (bool, error) {
	switch o.format {
	case "", "table", "text":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, fmt.Errorf("unknown output format %q (want json)", o.format)
	}
}

// templateRef is NAMESPACE/NAME[@VERSION].
type templateRef struct {
	namespace, name, version string
}

func (r templateRef) String() string {
	s := r.namespace + "/" + r.name
	if r.version != "" {
		s += "@" + r.version
	}
	return s
}

func parseTemplateRef(s string) (templateRef, error) {
	var r templateRef
	rest, version, hasVersion := strings.Cut(s, "@")
	ns, name, ok := strings.Cut(rest, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") || (hasVersion && version == "") {
		return r, fmt.Errorf("template %q: want NAMESPACE/NAME[@VERSION]", s)
	}
	return templateRef{namespace: ns, name: name, version: version}, nil
}

// showTask runs one unary call that answers with a task and prints it, as
// task get, cancel, retry and step resolve do.
func (g *globals) showTask(cmd *cobra.Command, out *outputFlag, call func(ctx context.Context, c *client) (*coordinatorv1.Task, error)) error {
	asJSON, err := out.json()
	if err != nil {
		return err
	}
	return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
		uctx, cancel := g.unary(ctx)
		defer cancel()
		t, err := call(uctx, c)
		if err != nil {
			return err
		}
		return writeTask(g.env.Stdout, asJSON, t)
	})
}
