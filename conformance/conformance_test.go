package conformance

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/executor"
)

// requireAllPass fails the test with every failed case's problems.
func requireAllPass(t *testing.T, report *Report, skipped ...string) {
	t.Helper()
	for _, res := range report.Results {
		want := StatusPass
		for _, id := range skipped {
			if res.ID == id {
				want = StatusSkip
			}
		}
		require.Equal(t, want, res.Status, "case %s: sent %s; got %s; problems:\n%s", res.ID, res.Sent, res.Got, strings.Join(res.Problems, "\n"))
	}
	require.Len(t, report.Results, len(cases))
}

func TestGoSDKPassesEveryCase(t *testing.T) {
	t.Parallel()
	sdk := startSDK(t, executor.Config{})
	report := runKit(t, sdk.addr, func(o *Options) { o.Shutdown = sdk.shutdown })
	logReport(t, report)
	requireAllPass(t, report)
	require.Equal(t, "go", report.Language)
}

func TestGoSDKPassesWithKitAsCoordinator(t *testing.T) {
	t.Parallel()
	// The executor redelivers through ReportStepResult to the kit's
	// stand-in coordinator instead of on the next stream.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sdk := startSDK(t, executor.Config{Coordinator: lis.Addr().String()})
	report := runKit(t, sdk.addr, func(o *Options) {
		o.Coordinator = lis
		o.Shutdown = sdk.shutdown
	})
	logReport(t, report)
	requireAllPass(t, report)
	redelivery, _ := report.Result("redelivery")
	require.Contains(t, redelivery.Got, "1 through ReportStepResult")
}

func TestShutdownSkippedWithoutControl(t *testing.T) {
	t.Parallel()
	sdk := startSDK(t, executor.Config{})
	// A proxy without faults is a correct executor too.
	p := startProxy(t, sdk, fault{})
	report := runKit(t, p.addr, nil)
	requireAllPass(t, report, "shutdown")
	res, _ := report.Result("shutdown")
	require.Contains(t, res.Problems[0], "--shutdown-cmd")
}

func logReport(t *testing.T, r *Report) {
	for _, res := range r.Results {
		t.Logf("%s %-18s %s | sent: %s | got: %s | %v", res.Status, res.ID, res.Duration, res.Sent, res.Got, res.Problems)
	}
}

func TestGoSDKOfCapacityOnePasses(t *testing.T) {
	t.Parallel()
	// The kit itself keeps within the capacity, as a coordinator must.
	sdk := startSDK(t, executor.Config{Capacity: 1})
	report := runKit(t, sdk.addr, func(o *Options) { o.Shutdown = sdk.shutdown })
	requireAllPass(t, report)
}
