package coordinator

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDescendants(t *testing.T) {
	t.Parallel()
	// Tasker's diamond: 0 start → {1 b1_process → 2 b1_validate, 3
	// b2_process → 4 b2_validate} → 5 merge → 6 end.
	diamond := [][]int{{1, 3}, {2}, {5}, {4}, {5}, {6}, nil}
	cases := []struct {
		name     string
		children [][]int
		from     int
		want     []int
	}{
		{"root takes everything", diamond, 0, []int{0, 1, 2, 3, 4, 5, 6}},
		{"one branch and the join", diamond, 3, []int{3, 4, 5, 6}},
		{"join reached twice, listed once", [][]int{{1, 2}, {3}, {3}, nil}, 0, []int{0, 1, 2, 3}},
		{"leaf alone", diamond, 6, []int{6}},
		{"a sibling branch is left out", [][]int{{1, 2}, nil, nil}, 1, []int{1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, descendants(tc.children, tc.from))
		})
	}
}

func TestIdempotencyKeyFormat(t *testing.T) {
	t.Parallel()
	require.Equal(t, "t-1/s-1/0", idempotencyKey("t-1", "s-1", 0))
	require.Equal(t, "t-1/s-1/12", idempotencyKey("t-1", "s-1", 12))
}
