package executor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

const testSecret = "executor-secret-0123456789"

func TestSecretGuardsDescribeAndExecute(t *testing.T) {
	t.Parallel()
	s := startExecutor(t, Config{Secret: testSecret}, map[string]HandlerFunc{"noop": noop})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	client := executorv1.NewExecutorServiceClient(conn)
	with := func(authz string) context.Context {
		if authz == "" {
			return t.Context()
		}
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", authz)
	}
	execute := func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := client.Execute(ctx)
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}

	for name, authz := range map[string]string{
		"none":         "",
		"wrong":        "Bearer executor-secret-9876543210",
		"prefix":       "Bearer executor-secret",
		"not a bearer": "Basic " + testSecret,
	} {
		_, err := client.Describe(with(authz), &executorv1.DescribeRequest{})
		require.Equal(t, codes.Unauthenticated, status.Code(err), "Describe, %s: %v", name, err)
		err = execute(with(authz))
		require.Equal(t, codes.Unauthenticated, status.Code(err), "Execute, %s: %v", name, err)
	}
	_, err = client.Describe(with(""), &executorv1.DescribeRequest{})
	require.Contains(t, status.Convert(err).Message(), "executor secret")

	resp, err := client.Describe(with("Bearer "+testSecret), &executorv1.DescribeRequest{})
	require.NoError(t, err)
	require.Equal(t, s.exec.ID(), resp.GetExecutorId())
	ctx, cancel := context.WithCancel(with("Bearer " + testSecret))
	defer cancel()
	stream, err := client.Execute(ctx)
	require.NoError(t, err)
	msg, err := stream.Recv()
	require.NoError(t, err)
	require.NotNil(t, msg.GetHeartbeat(), "the stream opens with a heartbeat")

	// Health checks hold no secret.
	hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, hc.GetStatus())
}

func TestSecretTooShortIsRefused(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Secret: "short"})
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "secret is 5 characters; use at least 16")
}
