package coordinator

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tasker-go/tasker/store"
)

// maxContextMatches bounds ListTasksRequest.context_equals: each is a
// JSON lookup per task scanned.
const maxContextMatches = 8

// parseContextMatches reads ListTasksRequest.context_equals. The error
// names the entry at fault, by its index in field.
func parseContextMatches(field string, entries []string) ([]store.ContextMatch, error) {
	if len(entries) > maxContextMatches {
		return nil, fmt.Errorf("%s: %d matches, at most %d", field, len(entries), maxContextMatches)
	}
	out := make([]store.ContextMatch, 0, len(entries))
	for i, e := range entries {
		m, err := parseContextMatch(e)
		if err != nil {
			return nil, fmt.Errorf("%s[%d] %q: %w", field, i, e, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// parseContextMatch reads one PATH=VALUE. VALUE is a JSON scalar when it
// reads as one and a plain string otherwise, so order_id=A-1 needs no
// quotes while amount=5 and amount="5" stay apart.
func parseContextMatch(s string) (store.ContextMatch, error) {
	path, raw, ok := strings.Cut(s, "=")
	if !ok {
		return store.ContextMatch{}, fmt.Errorf("want PATH=VALUE, such as order_id=A-1")
	}
	if path == "" {
		return store.ContextMatch{}, fmt.Errorf("the path before = is empty")
	}
	keys := strings.Split(path, ".")
	for _, k := range keys {
		if k == "" {
			return store.ContextMatch{}, fmt.Errorf("path %q has an empty key (keys are joined by single dots)", path)
		}
		if strings.Contains(k, `"`) {
			return store.ContextMatch{}, fmt.Errorf("path %q: a key cannot hold a double quote", path)
		}
	}
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return store.ContextMatch{Path: keys, Value: raw}, nil
	}
	switch v.(type) {
	case map[string]any, []any:
		return store.ContextMatch{}, fmt.Errorf("value %s is a JSON object or array; only strings, numbers, true, false and null are matched (quote it to match it as a string)", raw)
	}
	return store.ContextMatch{Path: keys, Value: v}, nil
}
