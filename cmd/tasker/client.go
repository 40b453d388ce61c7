package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state"
)

// client is an open connection to the coordinator.
type client struct {
	conn *grpc.ClientConn
	coordinatorv1.CoordinatorServiceClient
}

// Close releases the connection.
func (c *client) Close() error { return c.conn.Close() }

// dial opens the connection to the coordinator. It is the one place that
// picks transport credentials, so TLS options belong here.
func (g *globals) dial() (*client, error) {
	if g.coordinator == "" {
		return nil, errors.New("--coordinator is empty")
	}
	conn, err := grpc.NewClient(g.coordinator, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial coordinator %s: %w", g.coordinator, err)
	}
	return &client{conn: conn, CoordinatorServiceClient: coordinatorv1.NewCoordinatorServiceClient(conn)}, nil
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
// "<message> (<code>)".
func (g *globals) withClient(ctx context.Context, fn func(ctx context.Context, c *client) error) error {
	c, err := g.dial()
	if err != nil {
		return err
	}
	err = fn(ctx, c)
	if cerr := c.Close(); err == nil && cerr != nil {
		return fmt.Errorf("close connection: %w", cerr)
	}
	return rpcErr(err)
}

// rpcError is a failed call to the coordinator. Its text is the status
// message followed by the code, which is what users and scripts grep for.
type rpcError struct {
	st *status.Status
}

func (e *rpcError) Error() string {
	return fmt.Sprintf("%s (%s)", e.st.Message(), e.st.Code())
}

// GRPCStatus lets status.FromError and status.Code see through the wrapper.
func (e *rpcError) GRPCStatus() *status.Status { return e.st }

// rpcErr wraps err in an rpcError when it carries a gRPC status and leaves
// other errors (and nil) alone.
func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	var re *rpcError
	if errors.As(err, &re) {
		return err
	}
	if st, ok := status.FromError(err); ok {
		return &rpcError{st: st}
	}
	return err
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

// stateName maps the proto enum to the lower-case names used in all output.
func stateName(s coordinatorv1.State) string {
	switch s {
	case coordinatorv1.State_STATE_PENDING:
		return string(state.Pending)
	case coordinatorv1.State_STATE_IN_PROGRESS:
		return string(state.InProgress)
	case coordinatorv1.State_STATE_COMPLETE:
		return string(state.Complete)
	case coordinatorv1.State_STATE_ERROR:
		return string(state.Error)
	case coordinatorv1.State_STATE_CANCELLED:
		return string(state.Cancelled)
	case coordinatorv1.State_STATE_RESOLVED_MANUALLY:
		return string(state.ResolvedManually)
	case coordinatorv1.State_STATE_UNSPECIFIED:
		return ""
	default:
		return fmt.Sprintf("unknown(%d)", int32(s))
	}
}

// parseState maps a lower-case state name to the proto enum; "" means any.
func parseState(s string) (coordinatorv1.State, error) {
	if s == "" {
		return coordinatorv1.State_STATE_UNSPECIFIED, nil
	}
	st, err := state.Parse(s)
	if err != nil {
		return 0, err
	}
	v, ok := coordinatorv1.State_value["STATE_"+strings.ToUpper(string(st))]
	if !ok {
		return 0, fmt.Errorf("state %q has no protocol value", s)
	}
	return coordinatorv1.State(v), nil
}

// terminal reports whether a task in s has stopped moving on its own; these
// are the states after which WatchTask ends.
func terminal(s coordinatorv1.State) bool {
	switch s {
	case coordinatorv1.State_STATE_COMPLETE, coordinatorv1.State_STATE_ERROR,
		coordinatorv1.State_STATE_CANCELLED, coordinatorv1.State_STATE_RESOLVED_MANUALLY:
		return true
	default:
		return false
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
