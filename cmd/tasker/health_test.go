package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// An executor is ready once a coordinator has an Execute stream open to
// it, and live as long as it serves; its gRPC health (what the Kubernetes
// readiness probe asks) says the same.
func TestExecutorHealthReady(t *testing.T) {
	t.Parallel()
	c := &http.Client{}
	t.Cleanup(c.CloseIdleConnections)

	alone, err := serveExecutor(t, executorOptions{coordinator: closedAddr(t), httpListen: "127.0.0.1:0"})
	require.NoError(t, err)
	code, body := httpGet(t, c, "http://"+alone.httpAddr+"/healthz/ready", "")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.JSONEq(t, `{"status":"unavailable","reason":"not ready: no coordinator has an Execute stream open to this executor"}`, body)
	code, body = httpGet(t, c, "http://"+alone.httpAddr+"/healthz/live", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, grpcHealth(t, alone.addr, ""))
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, grpcHealth(t, alone.addr, "tasker.executor.v1.ExecutorService"))

	a := startREST(t, coordinatorOptions{})
	served, err := serveExecutor(t, executorOptions{coordinator: a.rc.addr, httpListen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		code, _ := httpGet(t, c, "http://"+served.httpAddr+"/healthz/ready", "")
		return code == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return grpcHealth(t, served.addr, "") == healthpb.HealthCheckResponse_SERVING &&
			grpcHealth(t, served.addr, "tasker.executor.v1.ExecutorService") == healthpb.HealthCheckResponse_SERVING
	}, 10*time.Second, 10*time.Millisecond)
}

// grpcHealth asks the grpc.health.v1 server at addr about service.
func grpcHealth(t *testing.T, addr, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { _ = cc.Close() }()
	resp, err := healthpb.NewHealthClient(cc).Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	return resp.GetStatus()
}
