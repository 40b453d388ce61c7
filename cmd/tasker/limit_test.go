package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	good := []struct {
		in     string
		units  int64
		period time.Duration
		back   string
	}{
		{"100/s", 100, time.Second, "100/s"},
		{"5000/h", 5000, time.Hour, "5000/h"},
		{"60/m", 60, time.Minute, "60/m"},
		{"3/250ms", 3, 250 * time.Millisecond, "3/250ms"},
		{" 7 / 2m ", 7, 2 * time.Minute, "7/2m0s"},
		{"1/1s", 1, time.Second, "1/s"},
	}
	for _, tc := range good {
		units, period, err := parseRate(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.units, units, tc.in)
		require.Equal(t, tc.period, period, tc.in)
		require.Equal(t, tc.back, formatRate(units, period))
	}
	for _, in := range []string{"100", "/s", "x/s", "0/s", "-5/s", "1.5/s", "10/d", "10/-1s", "10/0s", "10/"} {
		_, _, err := parseRate(in)
		require.Error(t, err, in)
		require.Contains(t, err.Error(), "--rate")
	}
}

func TestLimitCommands(t *testing.T) {
	t.Parallel()
	a := startREST(t, coordinatorOptions{})
	addr := a.rc.addr

	r := runCLI(t, addr, "limit", "list")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "NAME  RATE  BURST  UPDATED\n", r.stdout)

	r = runCLI(t, addr, "limit", "set", "stripe", "--rate", "100/s", "--burst", "20")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `^NAME +RATE +BURST +UPDATED\nstripe +100/s +20 +\S+`, r.stdout)

	// Without --burst, one period's worth.
	r = runCLI(t, addr, "limit", "set", "github", "--rate", "5000/h", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var gh rateLimitJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &gh))
	require.Equal(t, "github", gh.Name)
	require.Equal(t, "5000/h", gh.Rate)
	require.Equal(t, int64(5000), gh.Units)
	require.Equal(t, "1h0m0s", gh.Period)
	require.Equal(t, int64(5000), gh.Burst)
	require.Equal(t, gh.CreatedAt, gh.UpdatedAt)

	r = runCLI(t, addr, "limit", "list", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2)
	var first, second rateLimitJSON
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	require.Equal(t, []string{"github", "stripe"}, []string{first.Name, second.Name})
	require.Equal(t, "100/s", second.Rate)
	require.Equal(t, int64(20), second.Burst)

	r = runCLI(t, addr, "limit", "get", "stripe", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var got rateLimitJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Equal(t, second, got)

	// A template step using it, then delete refused while it does.
	tpl := writeFile(t, "charge.yaml", `
namespace: billing
name: charge
version: 1.0.0
concurrency: [{key: context.customer_id, max_running: 1}]
steps:
  - name: charge
    handler: noop
    rate_limits: [{name: stripe, units: 2, key: context.account_id}]
`)
	r = runCLI(t, addr, "template", "apply", tpl)
	require.Equal(t, 0, r.code, r.stderr)
	r = runCLI(t, addr, "limit", "delete", "stripe")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, `rate limit "stripe" is used by billing/charge@1.0.0 (step charge)`)

	r = runCLI(t, addr, "limit", "delete", "github", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	require.JSONEq(t, `{"name": "github", "deleted": true}`, r.stdout)
	r = runCLI(t, addr, "limit", "get", "github")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, `no rate limit named "github"`)
	require.Contains(t, r.stderr, "NotFound")
}

func TestLimitCommandRefusals(t *testing.T) {
	t.Parallel()
	a := startREST(t, coordinatorOptions{})
	addr := a.rc.addr
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"limit", "set", "stripe"}, exitUsage, "--rate is required"},
		{[]string{"limit", "set", "stripe", "--rate", "-5/s"}, exitUsage, `units "-5" must be a positive whole number`},
		{[]string{"limit", "set", "stripe", "--rate", "5/fortnight"}, exitUsage, `period "fortnight"`},
		{[]string{"limit", "set", "--rate", "5/s"}, exitUsage, "want NAME, got 0 arguments"},
		{[]string{"limit", "set", "stripe", "--rate", "5/s", "-o", "yaml"}, exitUsage, `unknown output format "yaml"`},
		{[]string{"limit", "set", "stripe", "--rate", "5/s", "--burst", "0"}, exitFailed, "rate_limit.burst: 0 is out of range"},
		{[]string{"limit", "set", "stripe api", "--rate", "5/s"}, exitFailed, `rate_limit.name: "stripe api" contains ' '`},
		{[]string{"limit", "set", "stripe", "--rate", "5/1500us"}, exitFailed, "rate_limit.period: 1.5ms is not a whole number of milliseconds"},
		{[]string{"limit", "frobnicate"}, exitUsage, "unknown"},
	}
	for _, tc := range cases {
		r := runCLI(t, addr, tc.args...)
		require.Equal(t, tc.code, r.code, "%v: %s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want, "%v", tc.args)
	}
	r := runCLI(t, addr, "limit", "list", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stdout, "nothing stored")
}

func TestLimitREST(t *testing.T) {
	t.Parallel()
	a := startREST(t, coordinatorOptions{})
	var set struct {
		RateLimit struct {
			Name   string `json:"name"`
			Units  string `json:"units"`
			Period string `json:"period"`
			Burst  string `json:"burst"`
		} `json:"rateLimit"`
	}
	a.call(http.MethodPut, "/api/v1/rate-limits/stripe", "", map[string]any{"units": 100, "period": "1s", "burst": 20}, &set)
	require.Equal(t, "stripe", set.RateLimit.Name)
	require.Equal(t, "100", set.RateLimit.Units)
	require.Equal(t, "1s", set.RateLimit.Period)

	var list struct {
		RateLimits []struct {
			Name string `json:"name"`
		} `json:"rateLimits"`
	}
	a.call(http.MethodGet, "/api/v1/rate-limits", "", nil, &list)
	require.Len(t, list.RateLimits, 1)
	a.call(http.MethodGet, "/api/v1/rate-limits/stripe", "", nil, nil)
	a.refused(http.MethodPut, "/api/v1/rate-limits/x", "", map[string]any{"units": -1, "period": "1s", "burst": 1},
		http.StatusBadRequest, 3, "rate_limit.units: -1 is out of range")
	a.call(http.MethodDelete, "/api/v1/rate-limits/stripe", "", nil, nil)
	a.refused(http.MethodGet, "/api/v1/rate-limits/stripe", "", nil, http.StatusNotFound, 5, `no rate limit named "stripe"`)
}
