package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	tasker "github.com/tasker-go/tasker"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// The gateway drops a query parameter that names no field of the request
// (and any query at all on a call that reads its request from the body),
// where it refuses an unknown field of a JSON body. A misspelt filter
// (?stat=STATE_ERROR) would then widen a list to every task without a word.
// queryCheck refuses such a parameter with InvalidArgument before the call
// is made. What each route takes in its query comes from the OpenAPI
// document generated with the gateway from the same HTTP rules, so the two
// cannot drift apart.

// queryRoute is what one route takes in its query string.
type queryRoute struct {
	// input is the route's request message, against which a parameter's
	// proto or JSON name is resolved.
	input protoreflect.MessageDescriptor
	// params are the query parameters the route takes, by their JSON
	// names as the document gives them (nested fields dotted).
	params []string
}

// queryRoutes maps a route, as its method and its path with every variable
// written as {} ("GET /api/v1/tasks/{}"), to what its query takes.
type queryRoutes map[string]queryRoute

// pathVariable matches a path template's variable: {id} in the document,
// {id=*} as the gateway prints a pattern.
var pathVariable = regexp.MustCompile(`\{[^}]*\}`)

// routeKey names a route by its method and its path template.
func routeKey(method, template string) string {
	return method + " " + pathVariable.ReplaceAllString(template, "{}")
}

// newQueryRoutes reads the routes and their query parameters from the
// OpenAPI document.
func newQueryRoutes(openAPI string) (queryRoutes, error) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(openAPI), &doc); err != nil {
		return nil, fmt.Errorf("read the OpenAPI document: %w", err)
	}
	svc := coordinatorv1.File_tasker_coordinator_v1_coordinator_proto.Services().ByName("CoordinatorService")
	routes := queryRoutes{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			name, ok := strings.CutPrefix(op.OperationID, string(svc.Name())+"_")
			m := svc.Methods().ByName(protoreflect.Name(name))
			if !ok || m == nil {
				return nil, fmt.Errorf("OpenAPI document: %s %s: operation %q is no method of %s", method, path, op.OperationID, svc.FullName())
			}
			r := queryRoute{input: m.Input()}
			for _, p := range op.Parameters {
				if p.In == "query" {
					r.params = append(r.params, p.Name)
				}
			}
			routes[routeKey(strings.ToUpper(method), path)] = r
		}
	}
	return routes, nil
}

// check returns an InvalidArgument error naming the first query parameter
// of r the route does not take, or nil. A route the document does not
// describe is left to the gateway.
func (rs queryRoutes) check(r *http.Request) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	pat, ok := runtime.HTTPPattern(r.Context())
	if !ok {
		return nil
	}
	route, ok := rs[routeKey(r.Method, pat.String())]
	if !ok {
		return nil
	}
	query := r.URL.Query()
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	slices.Sort(keys) // so that of several bad ones, the same is named each time
	for _, k := range keys {
		if !slices.Contains(route.params, queryName(route.input, k)) {
			return status.Error(codes.InvalidArgument, route.refusal(r, k))
		}
	}
	return nil
}

// refusal says why the route does not take parameter k.
func (q queryRoute) refusal(r *http.Request, k string) string {
	if len(q.params) == 0 {
		return fmt.Sprintf("unknown query parameter %q: %s %s takes none; send the request's fields in its path and JSON body",
			k, r.Method, r.URL.Path)
	}
	return fmt.Sprintf("unknown query parameter %q: %s %s takes %s", k, r.Method, r.URL.Path, strings.Join(q.params, ", "))
}

// queryName resolves a query parameter's name, dotted for a nested field
// and by each field's proto or JSON name as the gateway reads it, to the
// dotted JSON names the OpenAPI document lists. A name that resolves to no
// field is returned as it is (and then matches nothing the document
// lists, unless it was already in that form).
func queryName(desc protoreflect.MessageDescriptor, key string) string {
	parts := strings.Split(key, ".")
	out := make([]string, 0, len(parts))
	for i, part := range parts {
		if desc == nil {
			return key
		}
		fields := desc.Fields()
		fd := fields.ByTextName(part)
		if fd == nil {
			fd = fields.ByJSONName(part)
		}
		if fd == nil {
			return key
		}
		out = append(out, fd.JSONName())
		desc = nil
		if i < len(parts)-1 && fd.Message() != nil && !fd.IsList() && !fd.IsMap() {
			desc = fd.Message()
		}
	}
	return strings.Join(out, ".")
}

// newQueryCheck is the gateway middleware that refuses a query parameter
// its route does not take; fail writes the refusal as the gateway writes
// its own errors.
func newQueryCheck(fail func(http.ResponseWriter, *http.Request, error)) (runtime.Middleware, error) {
	routes, err := newQueryRoutes(tasker.OpenAPI())
	if err != nil {
		return nil, err
	}
	return func(next runtime.HandlerFunc) runtime.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request, pathParams map[string]string) {
			if err := routes.check(r); err != nil {
				fail(w, r, err)
				return
			}
			next(w, r, pathParams)
		}
	}, nil
}
