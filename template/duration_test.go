package template_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

func TestDurationMarshalJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   time.Duration
		want string
	}{
		{0, `"0s"`},
		{10 * time.Millisecond, `"10ms"`},
		{1500 * time.Millisecond, `"1.5s"`},
		{90 * time.Second, `"1m30s"`},
		{2 * time.Hour, `"2h0m0s"`},
	}
	for _, tc := range cases {
		got, err := json.Marshal(template.Duration(tc.in))
		require.NoError(t, err)
		require.Equal(t, tc.want, string(got))

		var back template.Duration
		require.NoError(t, json.Unmarshal(got, &back), "round trip of %s", tc.want)
		require.Equal(t, tc.in, back.Std())
	}
}

func TestDurationUnmarshalJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: `"10ms"`, want: 10 * time.Millisecond},
		{in: `"1.5s"`, want: 1500 * time.Millisecond},
		{in: `"1m30s"`, want: 90 * time.Second},
		{in: `"0s"`, want: 0},
		{in: `30`, want: 30 * time.Second},
		{in: `0.25`, want: 250 * time.Millisecond},
		{in: `0`, want: 0},
		{in: `1e-3`, want: time.Millisecond},
		{in: `"-1s"`, wantErr: "must not be negative"},
		{in: `-2`, wantErr: "must not be negative"},
		{in: `"10"`, wantErr: "want a Go duration"},
		{in: `"soon"`, wantErr: "want a Go duration"},
		{in: `""`, wantErr: "want a Go duration"},
		{in: `true`, wantErr: "want a duration string or a number of seconds"},
		{in: `{}`, wantErr: "want a duration string or a number of seconds"},
		{in: `1e300`, wantErr: "out of range"},
		{in: `-1e300`, wantErr: "out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			var d template.Duration
			err := json.Unmarshal([]byte(tc.in), &d)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Zero(t, d, "a failed decode must not change the value")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, d.Std())
		})
	}
}

func TestDurationNullLeavesValue(t *testing.T) {
	t.Parallel()
	d := template.Duration(time.Second)
	require.NoError(t, json.Unmarshal([]byte(`null`), &d))
	require.Equal(t, time.Second, d.Std())
	require.Equal(t, "1s", d.String())
}
