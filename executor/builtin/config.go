package builtin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/tasker-go/tasker/executor"
)

// invalidConfig builds a permanent config failure; its message names the
// field so the template's author knows what to fix.
func invalidConfig(format string, args ...any) error {
	err := fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	return executor.Permanent(executor.WithClass(err, ClassInvalidConfig))
}

// configFields splits a handler config object into its fields; no config
// (or null) is an empty object.
func configFields(cfg json.RawMessage) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(cfg)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return map[string]json.RawMessage{}, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil || fields == nil {
		return nil, invalidConfig("config must be a JSON object, got %s", clip(trimmed))
	}
	return fields, nil
}

// present returns the raw value of a field that is set and not null.
func present(fields map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	raw, ok := fields[name]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, false
	}
	return raw, true
}

// numberField reads a non-negative number; absent means 0.
func numberField(fields map[string]json.RawMessage, name string) (float64, error) {
	raw, ok := present(fields, name)
	if !ok {
		return 0, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil || n < 0 || math.IsInf(n, 0) {
		return 0, invalidConfig("config.%s must be a non-negative number, got %s", name, clip(raw))
	}
	return n, nil
}

// wholeField reads a non-negative whole number; absent means 0.
func wholeField(fields map[string]json.RawMessage, name string) (float64, error) {
	n, err := numberField(fields, name)
	if err != nil {
		return 0, err
	}
	if n != math.Trunc(n) {
		raw, _ := present(fields, name)
		return 0, invalidConfig("config.%s must be a non-negative whole number, got %s", name, clip(raw))
	}
	return n, nil
}

// boolField reads a boolean; absent means false.
func boolField(fields map[string]json.RawMessage, name string) (bool, error) {
	raw, ok := present(fields, name)
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, invalidConfig("config.%s must be true or false, got %s", name, clip(raw))
	}
	return b, nil
}

// clip keeps error messages short when a config holds a large value.
func clip(raw []byte) string {
	const limit = 64
	if len(raw) > limit {
		return string(raw[:limit]) + "..."
	}
	return string(raw)
}
