package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An executor is ready once a coordinator has an Execute stream open to
// it, and live as long as it serves.
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

	a := startREST(t, coordinatorOptions{})
	served, err := serveExecutor(t, executorOptions{coordinator: a.rc.addr, httpListen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		code, _ := httpGet(t, c, "http://"+served.httpAddr+"/healthz/ready", "")
		return code == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond)
}
