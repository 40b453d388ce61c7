package coordinator

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
)

func TestWriteHealth(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	full := fmt.Errorf("commit: database or disk is full: %w", store.ErrUnavailable)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type write struct {
		at  time.Duration
		err error
	}
	for _, tc := range []struct {
		name   string
		writes []write
		check  time.Duration
		want   string // "" for ready
	}{
		{name: "no writes", check: 0},
		{name: "successes", writes: []write{{0, nil}, {time.Second, nil}}, check: 2 * time.Second},
		{name: "one refusal is not an outage", writes: []write{{0, full}}, check: 500 * time.Millisecond},
		{name: "failing for a second", writes: []write{{0, full}, {time.Second, full}}, check: time.Second,
			want: "the store has refused every write for 1s (the last 0s ago): commit: database or disk is full"},
		{name: "failing, checked later", writes: []write{{0, full}}, check: 3 * time.Second,
			want: "refused every write for 0s (the last 3s ago)"},
		{name: "a success in between starts over", writes: []write{{0, full}, {900 * time.Millisecond, nil}, {time.Second, full}},
			check: 1500 * time.Millisecond},
		{name: "recovered", writes: []write{{0, full}, {2 * time.Second, full}, {3 * time.Second, nil}}, check: 4 * time.Second},
		{name: "stale failures", writes: []write{{0, full}, {2 * time.Second, full}}, check: 2*time.Second + writeFailureFresh + time.Millisecond},
		{name: "still fresh", writes: []write{{0, full}, {2 * time.Second, full}}, check: 2*time.Second + writeFailureFresh,
			want: "refused every write for 2s"},
		{name: "refusals of the request say nothing", writes: []write{{0, full}, {time.Second, store.ErrLeaseLost}, {2 * time.Second, store.ErrConflict}},
			check: 2 * time.Second, want: "refused every write for 0s (the last 2s ago)"},
		{name: "refusals alone say nothing", writes: []write{{0, store.ErrLeaseLost}, {2 * time.Second, store.ErrNotFound}}, check: 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h writeHealth
			for _, w := range tc.writes {
				h.observe(at(w.at), w.err)
			}
			err := h.check(at(tc.check))
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			require.ErrorIs(t, err, store.ErrUnavailable)
		})
	}
}
