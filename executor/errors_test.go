package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMarkersOfNilStayNil(t *testing.T) {
	t.Parallel()
	require.NoError(t, Permanent(nil))
	require.NoError(t, RetryAfter(nil, time.Second))
	require.NoError(t, WithClass(nil, "X"))
}

func TestMarkersKeepTheChain(t *testing.T) {
	t.Parallel()
	err := Permanent(RetryAfter(WithClass(fmt.Errorf("read: %w", io.EOF), "IO"), time.Second))
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, "read: EOF", err.Error())
}

func TestFailureOf(t *testing.T) {
	t.Parallel()
	base := errors.New("base")
	cases := []struct {
		name      string
		err       error
		fallback  string
		class     string
		permanent bool
		backoff   time.Duration
	}{
		{name: "plain", err: base, class: "*errors.errorString"},
		{name: "wrapped keeps innermost type", err: fmt.Errorf("a: %w", fmt.Errorf("b: %w", quotaError{})), class: "executor.quotaError"},
		{name: "fallback beats type name", err: base, fallback: "DeadlineExceeded", class: "DeadlineExceeded"},
		{name: "explicit class beats fallback", err: WithClass(base, "Mine"), fallback: "DeadlineExceeded", class: "Mine"},
		{name: "outer class wins", err: WithClass(fmt.Errorf("x: %w", WithClass(base, "Inner")), "Outer"), class: "Outer"},
		{name: "permanent deep in chain", err: fmt.Errorf("ctx: %w", Permanent(base)), class: "*errors.errorString", permanent: true},
		{name: "outer backoff wins", err: RetryAfter(RetryAfter(base, time.Second), 3*time.Second), class: "*errors.errorString", backoff: 3 * time.Second},
		{name: "non-positive backoff ignored", err: RetryAfter(base, -time.Second), class: "*errors.errorString"},
		{
			name:  "joined errors contribute markers",
			err:   errors.Join(Permanent(base), RetryAfter(quotaError{}, 2*time.Second)),
			class: "*errors.errorString", permanent: true, backoff: 2 * time.Second,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := failureOf(tc.err, tc.fallback)
			require.Equal(t, tc.err.Error(), f.GetMessage())
			require.Equal(t, tc.class, f.GetErrorClass())
			require.Equal(t, tc.permanent, f.GetPermanent())
			if tc.backoff == 0 {
				require.Nil(t, f.GetBackoff())
			} else {
				require.Equal(t, tc.backoff, f.GetBackoff().AsDuration())
			}
		})
	}
}

func TestEncodeResults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   any
		want string
		bad  bool
	}{
		{name: "nil", in: nil, want: `{}`},
		{name: "raw", in: json.RawMessage(`{"a": [1]}`), want: `{"a": [1]}`},
		{name: "empty raw", in: json.RawMessage(nil), want: `{}`},
		{name: "bytes", in: []byte(`3`), want: `3`},
		{name: "map", in: map[string]int{"n": 1}, want: `{"n":1}`},
		{name: "invalid raw", in: json.RawMessage(`{`), bad: true},
		{name: "unencodable", in: func() {}, bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := encodeResults(tc.in)
			if tc.bad {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
		})
	}
}

func TestProgressOutsideExecutorIsNoop(t *testing.T) {
	t.Parallel()
	// Handlers unit-tested with a hand-built Request must not crash.
	require.NotPanics(t, func() { (&Request{}).Progress(50, "half") })
	var nilReq *Request
	require.NotPanics(t, func() { nilReq.Progress(50, "half") })
}
