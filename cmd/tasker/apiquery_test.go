package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	tasker "github.com/tasker-go/tasker"
)

// Every route the OpenAPI document describes refuses a query parameter it
// does not take, before calling the coordinator: GETs whose request has
// fields outside the path (where the gateway would drop the unknown one),
// GETs whose request is all path (where it reads no query at all), and
// calls that read the body (ditto).
func TestRESTAPIRefusesUnknownQueryParameters(t *testing.T) {
	t.Parallel()
	routes, err := newQueryRoutes(tasker.OpenAPI())
	require.NoError(t, err)
	require.Greater(t, len(routes), 20, "the document's routes")
	a := startREST(t, coordinatorOptions{})
	for key := range routes {
		method, template, _ := strings.Cut(key, " ")
		path := strings.ReplaceAll(template, "{}", "x") + "?bogus_param=1"
		var body any
		if method != http.MethodGet && method != http.MethodDelete {
			body = map[string]any{}
		}
		a.refused(method, path, "", body, http.StatusBadRequest, 3, `unknown query parameter "bogus_param"`)
	}
}

// Each parameter the document lists is taken, under its JSON name and its
// proto name alike (the gateway reads both), and nothing else is.
func TestQueryRoutesReadBothNames(t *testing.T) {
	routes, err := newQueryRoutes(tasker.OpenAPI())
	require.NoError(t, err)
	list := routes["GET /api/v1/tasks"]
	require.Contains(t, list.params, "pageSize")
	require.Contains(t, list.params, "contextEquals")
	for key, r := range routes {
		for _, p := range r.params {
			require.Equal(t, p, queryName(r.input, p), "%s: %s", key, p)
			proto := protoName(t, r, p)
			require.Equal(t, p, queryName(r.input, proto), "%s: %s as %s", key, p, proto)
		}
	}
	for _, tc := range []struct{ key, want string }{
		{"page_size", "pageSize"},
		{"pageSize", "pageSize"},
		{"stat", "stat"},
		{"id", "id"},           // a path variable: a field, but not one the query takes
		{"state.x", "state.x"}, // state is no message
		{"pageSize.x", "pageSize.x"},
	} {
		got := queryName(list.input, tc.key)
		require.Equal(t, tc.want, got, tc.key)
	}
	// A path variable is a field of the request, but not one its query
	// takes.
	get := routes["GET /api/v1/tasks/{}"]
	require.Equal(t, "id", queryName(get.input, "id"))
	require.Empty(t, get.params)
}

// protoName spells a documented parameter by its fields' proto names.
func protoName(t *testing.T, r queryRoute, param string) string {
	t.Helper()
	desc := r.input
	var out []string
	for _, part := range strings.Split(param, ".") {
		fd := desc.Fields().ByJSONName(part)
		require.NotNil(t, fd, "%s in %s", part, desc.FullName())
		out = append(out, string(fd.Name()))
		desc = fd.Message()
	}
	return strings.Join(out, ".")
}
