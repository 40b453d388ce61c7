package coordinator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// stepHandler is a step that will need its handler to run.
type stepHandler struct {
	step, handler string
}

// unhostedHandlers remembers the handlers already logged as hosted by no
// executor, so that each is logged once rather than on every call, and
// again only after an executor hosting it has been seen in between. The
// zero value is ready to use.
type unhostedHandlers struct {
	mu     sync.Mutex // protects logged
	logged map[string]bool
}

// handlerWarnings returns one warning for each handler of steps that no
// connected executor hosts, naming the handler and its steps in the order
// given. Such steps wait, without error, until an executor hosting the
// handler connects; a caller told nothing would see its task sit
// in_progress forever. subject names what the steps belong to in the log.
func (s *server) handlerWarnings(subject string, steps []stepHandler) []string {
	var (
		order  []string // unhosted handlers, first use first
		hosted = map[string]bool{}
		byName = map[string][]string{}
	)
	for _, st := range steps {
		h := st.handler
		if h == "" {
			continue // a durable wait (wait_for, sleep) runs no handler
		}
		if _, checked := hosted[h]; !checked {
			hosted[h] = s.c.engine.pool.hosted(h)
			if hosted[h] {
				s.unhosted.seenHosted(h)
			} else {
				order = append(order, h)
			}
		}
		if !hosted[h] {
			byName[h] = append(byName[h], st.step)
		}
	}
	warnings := make([]string, 0, len(order))
	for _, h := range order {
		names := byName[h]
		kind := "step"
		if len(names) > 1 {
			kind = "steps"
		}
		warnings = append(warnings, fmt.Sprintf("no connected executor hosts handler %q (%s %s): tasks wait at it until an executor hosting it connects",
			h, kind, quoteAll(names)))
		if s.unhosted.firstSighting(h) {
			s.c.engine.log.Warn("no connected executor hosts a handler that steps need; they wait until one connects",
				"handler", h, "in", subject, kind, strings.Join(names, ","))
		}
	}
	return warnings
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// firstSighting records handler as logged and reports whether it was not
// already.
func (u *unhostedHandlers) firstSighting(handler string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.logged[handler] {
		return false
	}
	if u.logged == nil {
		u.logged = map[string]bool{}
	}
	u.logged[handler] = true
	return true
}

// seenHosted forgets handler, so it is logged again if it loses its
// executors.
func (u *unhostedHandlers) seenHosted(handler string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.logged, handler)
}

// unhosted lists the handlers that registered templates (in namespaces
// allowed shows) use and no connected executor hosts, each with the
// templates that use it, in name order: steps needing them wait.
func (e *engine) unhosted(ctx context.Context, allowed func(namespace string) bool) ([]*coordinatorv1.UnhostedHandler, error) {
	all, err := e.templates.list(ctx, "")
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, t := range all {
		if !allowed(t.Namespace) {
			continue
		}
		ref := templateKey(t.Namespace, t.Name, t.Version)
		for _, st := range t.Steps {
			if st.Handler == "" {
				continue // a durable wait runs no handler
			}
			if us := users[st.Handler]; len(us) == 0 || us[len(us)-1] != ref {
				users[st.Handler] = append(us, ref)
			}
		}
	}
	var out []*coordinatorv1.UnhostedHandler
	for _, h := range slices.Sorted(maps.Keys(users)) {
		if !e.pool.hosted(h) {
			out = append(out, &coordinatorv1.UnhostedHandler{Handler: h, Templates: users[h]})
		}
	}
	return out, nil
}
