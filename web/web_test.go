package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, method, target string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

func TestHandlerServesTheEmbeddedBuild(t *testing.T) {
	t.Parallel()
	h := Handler()

	res := get(t, h, http.MethodGet, "/")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
	require.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
	require.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
	require.Contains(t, res.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	index := body(t, res)
	require.Contains(t, index, `<div id="root"></div>`)

	// The built index names its hashed script and stylesheet.
	script := regexp.MustCompile(`src="(/assets/[^"]+\.js)"`).FindStringSubmatch(index)
	require.NotNil(t, script, "index.html names a script: %s", index)
	style := regexp.MustCompile(`href="(/assets/[^"]+\.css)"`).FindStringSubmatch(index)
	require.NotNil(t, style, "index.html names a stylesheet: %s", index)

	res = get(t, h, http.MethodGet, script[1])
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/javascript; charset=utf-8", res.Header.Get("Content-Type"))
	require.Equal(t, "public, max-age=31536000, immutable", res.Header.Get("Cache-Control"))
	require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	require.Contains(t, body(t, res), "Tasker", "the dashboard's own script")

	res = get(t, h, http.MethodGet, style[1])
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/css; charset=utf-8", res.Header.Get("Content-Type"))
}

func TestHandlerFallsBackToIndexForClientRoutes(t *testing.T) {
	t.Parallel()
	h := Handler()
	index := body(t, get(t, h, http.MethodGet, "/"))
	for _, target := range []string{
		"/tasks", "/tasks/01a22e9b-efef-701a-8353-482ad018b41e?step=charge", "/templates/demo/order.v2",
		"/executors", "/analytics/demo/order_fulfillment?window=1h", "/index.html", "/no/such/page",
	} {
		res := get(t, h, http.MethodGet, target)
		require.Equal(t, http.StatusOK, res.StatusCode, target)
		require.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"), target)
		require.Equal(t, index, body(t, res), target)
	}
	res := get(t, h, http.MethodHead, "/tasks/x")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Empty(t, body(t, res))
}

func TestHandlerRefusesWhatIsNotAPage(t *testing.T) {
	t.Parallel()
	h := Handler()
	for _, target := range []string{
		"/assets/index-gone.js", "/assets/whatever", "/favicon.ico", "/old.css",
		"/api/v1/no-such-method", "/api", "/api/openapi.json",
	} {
		res := get(t, h, http.MethodGet, target)
		require.Equal(t, http.StatusNotFound, res.StatusCode, target)
		require.NotContains(t, body(t, res), `<div id="root">`, target)
	}
	res := get(t, h, http.MethodPost, "/tasks")
	require.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)
	require.Equal(t, "GET, HEAD", res.Header.Get("Allow"))
	// A path that climbs out is cleaned first: it can only reach the build.
	res = get(t, h, http.MethodGet, "/assets/../../web.go")
	require.NotContains(t, body(t, res), "package web")
}

func TestNewHandlerNeedsAnIndex(t *testing.T) {
	t.Parallel()
	_, err := newHandler(fstest.MapFS{"dist/assets/a.js": {Data: []byte("x")}})
	require.ErrorContains(t, err, "no index.html (run npm run build in web/)")
	h, err := newHandler(fstest.MapFS{
		"dist/index.html":   {Data: []byte("<p>hi</p>")},
		"dist/robots.txt":   {Data: []byte("User-agent: *\n")},
		"dist/assets/a.css": {Data: []byte("p{}")},
	})
	require.NoError(t, err)
	res := get(t, h, http.MethodGet, "/robots.txt")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
	require.Equal(t, "<p>hi</p>", body(t, get(t, h, http.MethodGet, "/tasks")))
}
