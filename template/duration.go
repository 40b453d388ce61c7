package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Std returns d as a time.Duration, for callers doing arithmetic with it.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d the way templates write it ("10ms", "1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a Go duration string, so templates round-trip in
// the form people write them rather than as opaque nanosecond counts.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string ("250ms", "1m") or a JSON number
// of seconds (YAML users often write `timeout: 30`). Negative durations are
// refused: no field in a template has a meaning for them. JSON null leaves d
// unchanged, as encoding/json does for other types.
func (d *Duration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var parsed time.Duration
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("duration: %w", err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a Go duration such as \"500ms\" or \"2s\": %w", s, err)
		}
		parsed = v
	} else {
		secs, err := strconv.ParseFloat(string(data), 64)
		if err != nil {
			return fmt.Errorf("duration %s: want a duration string or a number of seconds", data)
		}
		ns := math.Round(secs * float64(time.Second))
		// float64(MaxInt64) rounds up to 2^63, so >= keeps the conversion
		// below in range.
		if math.IsNaN(ns) || ns >= float64(math.MaxInt64) || ns <= float64(math.MinInt64) {
			return fmt.Errorf("duration %s seconds: out of range", data)
		}
		parsed = time.Duration(ns)
	}
	if parsed < 0 {
		return errors.New("duration " + parsed.String() + ": must not be negative")
	}
	*d = Duration(parsed)
	return nil
}
