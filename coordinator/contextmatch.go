package coordinator

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tasker-go/tasker/store"
)

// maxContextMatches bounds the context_equals of ListTasksRequest and
// CountTasksRequest: each is a JSON lookup per task scanned.
const maxContextMatches = 8

// parseContextMatches reads a request's context_equals. The error names
// the entry at fault, by its index in field.
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

// parseContextMatch reads one PATH=VALUE. PATH is keys joined by dots; a
// backslash makes the next dot, equals sign or backslash part of a key
// (a\.b=1 is the key "a.b"). VALUE is a JSON scalar when it reads as one
// and a plain string otherwise, so order_id=A-1 needs no quotes while
// amount=5 and amount="5" stay apart.
func parseContextMatch(s string) (store.ContextMatch, error) {
	keys, raw, err := splitContextPath(s)
	if err != nil {
		return store.ContextMatch{}, err
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

// splitContextPath reads PATH up to the first unescaped '=' of s, splitting
// it into keys at unescaped dots, and returns the keys and what follows
// the '='.
func splitContextPath(s string) ([]string, string, error) {
	var (
		keys []string
		key  strings.Builder
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 == len(s) || strings.IndexByte(".=\\", s[i+1]) < 0 {
				return nil, "", fmt.Errorf(`path: a backslash escapes only ".", "=" or "\"; write \\ for a backslash in a key`)
			}
			i++
			key.WriteByte(s[i])
		case '.', '=':
			k := key.String()
			if k == "" && c == '=' && len(keys) == 0 {
				return nil, "", fmt.Errorf("the path before = is empty")
			}
			if k == "" {
				return nil, "", fmt.Errorf("path %q has an empty key (keys are joined by single dots)", s[:i+1])
			}
			if strings.Contains(k, `"`) {
				return nil, "", fmt.Errorf("path %q: a key cannot hold a double quote", s[:i])
			}
			keys = append(keys, k)
			key.Reset()
			if c == '=' {
				return keys, s[i+1:], nil
			}
		default:
			key.WriteByte(c)
		}
	}
	return nil, "", fmt.Errorf("want PATH=VALUE, such as order_id=A-1")
}
