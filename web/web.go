// Package web serves the dashboard: the single-page app built from the
// TypeScript sources beside this file (npm run build writes dist/) and
// embedded in the binary, so running it needs no Node.js. Everything it
// shows comes from the REST API under /api/v1/, which it does not serve.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// isAsset says whether a path names a kind of file the build emits. A
// missing file of one of these kinds is a 404, never index.html: a browser
// told that a stale script is HTML fails with a baffling error instead of a
// clear one.
func isAsset(name string) bool {
	if strings.HasPrefix(name, "assets/") {
		return true
	}
	switch path.Ext(name) {
	case ".js", ".mjs", ".css", ".map", ".json", ".svg", ".png", ".ico", ".woff", ".woff2", ".txt", ".wasm":
		return true
	}
	return false
}

// setSecurityHeaders marks every answer. The app loads nothing from other
// origins and is never framed (its buttons cancel and retry tasks).
// 'unsafe-eval' is there because ajv compiles a template's context schema
// into a function, which is how the create form checks contexts in the
// browser; inline styles come from the graph library's positioning.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "+
		"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
}

type handler struct {
	files fs.FS
	index []byte
}

// Handler serves the dashboard. Mount it at "/": files of the build are
// served as they are (hashed assets under /assets/ cached for good), and
// any other GET that is not under /api/ gets index.html, so that a page
// such as /tasks/ID can be opened or reloaded directly.
func Handler() http.Handler {
	h, err := newHandler(dist)
	if err != nil {
		// dist/ is embedded at build time; without index.html the binary
		// was built from a broken checkout, which the tests catch.
		panic(err)
	}
	return h
}

func newHandler(embedded fs.FS) (*handler, error) {
	files, err := fs.Sub(embedded, "dist")
	if err != nil {
		return nil, fmt.Errorf("dashboard build: %w", err)
	}
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard build has no index.html (run npm run build in web/): %w", err)
	}
	return &handler{files: files, index: index}, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard only answers GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	p := path.Clean("/" + r.URL.Path)
	if p == "/api" || strings.HasPrefix(p, "/api/") {
		// Routed here only when nothing under /api/ matched.
		http.NotFound(w, r)
		return
	}
	name := strings.TrimPrefix(p, "/")
	if name != "" && name != "index.html" {
		if st, err := fs.Stat(h.files, name); err == nil && !st.IsDir() {
			if strings.HasPrefix(name, "assets/") {
				// Vite puts a content hash in every asset's name.
				w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			} else {
				w.Header().Set("Cache-Control", "no-cache")
			}
			http.ServeFileFS(w, r, h.files, name)
			return
		}
		if isAsset(name) {
			http.NotFound(w, r)
			return
		}
	}
	// index.html names the current assets: always revalidated.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(h.index))
}
