package coordinator

import (
	"fmt"
	"strings"
	"sync"
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
