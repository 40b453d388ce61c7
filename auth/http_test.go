package auth_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/auth"
)

func TestHTTPGuard(t *testing.T) {
	t.Parallel()
	toks, err := auth.ParseTokens([]byte(`
- {name: reader, token: reader-token-0123456789, namespaces: [a], access: read}
- {name: writer, token: writer-token-0123456789, namespaces: ["*"], access: write}
- {name: exec, token: executor-token-0123456789, access: executor}
`))
	require.NoError(t, err)
	var logs bytes.Buffer
	var seenName string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenName = "<none>"
		if p, ok := auth.FromContext(r.Context()); ok {
			seenName = p.Name
		}
		_, _ = io.WriteString(w, "ok")
	})
	h := auth.NewHTTPGuard(auth.HTTPGuardConfig{
		Authenticator: toks, Need: auth.AccessRead, Public: []string{"/healthz"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}).Wrap(next)

	get := func(path, authz string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		rec := httptest.NewRecorder()
		seenName = ""
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	body := func(r *http.Response) string {
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		return string(b)
	}

	r := get("/healthz", "")
	require.Equal(t, http.StatusOK, r.StatusCode, "health needs no token")
	require.Equal(t, "<none>", seenName)

	for _, tc := range []struct {
		path, authz string
		code        int
		want        string
	}{
		{"/metrics", "", http.StatusUnauthorized, `no bearer token: send "Authorization: Bearer <token>"`},
		{"/healthz/../metrics", "", http.StatusUnauthorized, "no bearer token"},
		{"/debug/pprof/", "Basic dXNlcjpwYXNz", http.StatusUnauthorized, `Authorization header must be "Bearer <token>"`},
		{"/metrics", "Bearer nobody-issued-this-token", http.StatusUnauthorized, "token not recognised"},
		{"/metrics", "Bearer executor-token-0123456789", http.StatusForbidden, `token "exec" has executor access; GET /metrics needs read access`},
	} {
		r := get(tc.path, tc.authz)
		require.Equal(t, tc.code, r.StatusCode, tc.path, tc.authz)
		require.Contains(t, body(r), tc.want, tc.path)
		require.Empty(t, seenName, "the handler did not run")
		if tc.code == http.StatusUnauthorized {
			require.Equal(t, `Bearer realm="tasker"`, r.Header.Get("WWW-Authenticate"))
		}
	}
	require.Contains(t, logs.String(), "request refused", "refusals are logged for auditing")
	require.NotContains(t, logs.String(), "0123456789", "tokens never reach the log")

	for tok, name := range map[string]string{"reader-token-0123456789": "reader", "writer-token-0123456789": "writer"} {
		r := get("/metrics", "bearer "+tok)
		require.Equal(t, http.StatusOK, r.StatusCode, name)
		require.Equal(t, "ok", body(r))
		require.Equal(t, name, seenName, "the principal reaches the handler")
	}

	// Tokens off: every request passes as the anonymous principal.
	open := auth.NewHTTPGuard(auth.HTTPGuardConfig{Need: auth.AccessRead}).Wrap(next)
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "anonymous", seenName)
}
