package main

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDashboardURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr  string
		https bool
		want  string
	}{
		{"127.0.0.1:7080", false, "http://127.0.0.1:7080/"},
		{"127.0.0.1:7080", true, "https://127.0.0.1:7080/"},
		// A listener on every interface is reached on loopback from here.
		{"0.0.0.0:7080", false, "http://127.0.0.1:7080/"},
		{"[::]:7080", false, "http://127.0.0.1:7080/"},
		{":7080", false, "http://127.0.0.1:7080/"},
		{"[::1]:7080", false, "http://[::1]:7080/"},
		{"tasker.internal:443", true, "https://tasker.internal:443/"},
		{"not an address", false, "not an address"},
	} {
		require.Equal(t, tc.want, dashboardURL(tc.addr, tc.https), tc.addr)
	}
}

// tasker dev says where its dashboard is, and refuses a --http-listen that
// is not host:port before starting anything.
func TestDevPrintsTheDashboardURL(t *testing.T) {
	t.Parallel()
	res := runCLIEnv(t, cliEnvFor(map[string]string{"TMPDIR": t.TempDir()}), "dev", "--once", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	require.Equal(t, 0, res.code, res.stderr)
	require.Regexp(t, regexp.MustCompile(`(?m)^dashboard on http://127\.0\.0\.1:\d+/$`), res.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^REST/JSON API on http://127\.0\.0\.1:\d+/api/v1/ \(OpenAPI document at /api/openapi\.json\)$`), res.stdout)

	res = runCLIEnv(t, cliEnvFor(map[string]string{"TMPDIR": t.TempDir()}), "dev", "--once", "--listen", "127.0.0.1:0", "--http-listen", "7080")
	require.NotEqual(t, 0, res.code)
	require.Contains(t, res.stderr, `--http-listen: want host:port (e.g. 127.0.0.1:7080), got "7080"`)
	require.NotContains(t, res.stdout, "starting a coordinator")
}
