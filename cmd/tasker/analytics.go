package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// analyticsJSON is the -o json shape of GetAnalytics: one object. Durations
// are seconds, rates are fractions from 0 to 1. Scripts depend on it: add
// fields only at the end.
type analyticsJSON struct {
	Namespace           string              `json:"namespace"`
	Name                string              `json:"name"`
	Version             string              `json:"version"`
	Since               string              `json:"since"`
	Until               string              `json:"until"`
	TasksFinished       int64               `json:"tasks_finished"`
	Completed           int64               `json:"completed"`
	Errored             int64               `json:"errored"`
	Cancelled           int64               `json:"cancelled"`
	Resolved            int64               `json:"resolved"`
	ThroughputPerMinute float64             `json:"throughput_per_minute"`
	SuccessRate         float64             `json:"success_rate"`
	ErrorRate           float64             `json:"error_rate"`
	CancelRate          float64             `json:"cancel_rate"`
	RetryRate           float64             `json:"retry_rate"`
	Duration            percentilesJSON     `json:"duration"`
	BottleneckStep      string              `json:"bottleneck_step"`
	BottleneckShare     float64             `json:"bottleneck_share"`
	Steps               []stepAnalyticsJSON `json:"steps"`
	TopErrors           []errorCountJSON    `json:"top_errors"`
}

type percentilesJSON struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_seconds"`
	P95   float64 `json:"p95_seconds"`
	P99   float64 `json:"p99_seconds"`
}

type stepAnalyticsJSON struct {
	Name              string          `json:"name"`
	Attempts          int64           `json:"attempts"`
	Retries           int64           `json:"retries"`
	Failures          int64           `json:"failures"`
	Running           percentilesJSON `json:"running"`
	QueueWait         percentilesJSON `json:"queue_wait"`
	CriticalPathShare float64         `json:"critical_path_share"`
}

type errorCountJSON struct {
	Step    string `json:"step"`
	Class   string `json:"class"`
	Message string `json:"message"`
	Count   int64  `json:"count"`
}

// newAnalyticsCmd shows GetAnalytics for one template.
func newAnalyticsCmd(g *globals) *cobra.Command {
	var (
		out          outputFlag
		since, until string
	)
	cmd := &cobra.Command{
		Use:   "analytics NAMESPACE/NAME[@VERSION]",
		Short: "Show how a template's tasks did over a time window",
		Long: `Show how the tasks of a template that finished in a time window did:
outcomes and rates, throughput, task duration percentiles, per-step running
time, queue wait, attempts, retries and failures, the most common failures
and the bottleneck step (the largest share of the completed tasks' critical
paths). With @VERSION only that version's tasks count.

--since is a duration back from --until (24h, 90m) or an RFC 3339 time;
--until is an RFC 3339 time. The default window is the last 24 hours.`,
		Example: `  tasker analytics shop/checkout
  tasker analytics shop/checkout@1.2.0 --since 2h -o json
  tasker analytics shop/checkout --since 2026-03-01T00:00:00Z --until 2026-03-02T00:00:00Z`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			ref, err := parseTemplateRef(args[0])
			if err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			sinceTS, untilTS, err := analyticsWindow(since, until, time.Now())
			if err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.GetAnalytics(uctx, &coordinatorv1.GetAnalyticsRequest{
					Namespace: ref.namespace, Name: ref.name, Version: ref.version, Since: sinceTS, Until: untilTS,
				})
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSONLine(g.env.Stdout, toAnalyticsJSON(resp.GetAnalytics()))
				}
				return writeAnalytics(g.env.Stdout, resp.GetAnalytics())
			})
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "start of the window: a duration before --until (24h, 90m) or an RFC 3339 time (default 24h)")
	cmd.Flags().StringVar(&until, "until", "", "end of the window: an RFC 3339 time (default now)")
	out.register(cmd)
	return cmd
}

// analyticsWindow reads --since and --until; nil leaves a bound to the
// coordinator's default. A relative --since without --until is measured
// back from now, and then until is sent as now too, so the window is as
// long as asked whatever the coordinator's clock says.
func analyticsWindow(since, until string, now time.Time) (*timestamppb.Timestamp, *timestamppb.Timestamp, error) {
	var untilTS *timestamppb.Timestamp
	end := now
	if until != "" {
		t, err := time.Parse(time.RFC3339Nano, until)
		if err != nil {
			return nil, nil, fmt.Errorf("--until %q: want an RFC 3339 time such as 2026-03-01T12:00:00Z", until)
		}
		end, untilTS = t, timestamppb.New(t)
	}
	if since == "" {
		return nil, untilTS, nil
	}
	if d, err := time.ParseDuration(since); err == nil {
		if d <= 0 {
			return nil, nil, fmt.Errorf("--since %q: a duration must be positive", since)
		}
		return timestamppb.New(end.Add(-d)), timestamppb.New(end), nil
	}
	t, err := time.Parse(time.RFC3339Nano, since)
	if err != nil {
		return nil, nil, fmt.Errorf("--since %q: want a duration (24h, 90m) or an RFC 3339 time", since)
	}
	return timestamppb.New(t), untilTS, nil
}

func toPercentilesJSON(p *coordinatorv1.Percentiles) percentilesJSON {
	return percentilesJSON{
		Count: p.GetCount(), P50: p.GetP50().AsDuration().Seconds(),
		P95: p.GetP95().AsDuration().Seconds(), P99: p.GetP99().AsDuration().Seconds(),
	}
}

func toAnalyticsJSON(a *coordinatorv1.TemplateAnalytics) analyticsJSON {
	out := analyticsJSON{
		Namespace: a.GetNamespace(), Name: a.GetName(), Version: a.GetVersion(),
		Since: formatTime(a.GetSince()), Until: formatTime(a.GetUntil()),
		TasksFinished: a.GetTasksFinished(), Completed: a.GetCompleted(), Errored: a.GetErrored(),
		Cancelled: a.GetCancelled(), Resolved: a.GetResolved(),
		ThroughputPerMinute: a.GetThroughputPerMinute(),
		SuccessRate:         a.GetSuccessRate(), ErrorRate: a.GetErrorRate(), CancelRate: a.GetCancelRate(),
		RetryRate: a.GetRetryRate(), Duration: toPercentilesJSON(a.GetDuration()),
		BottleneckStep: a.GetBottleneckStep(), BottleneckShare: a.GetBottleneckShare(),
		Steps: []stepAnalyticsJSON{}, TopErrors: []errorCountJSON{},
	}
	for _, s := range a.GetSteps() {
		out.Steps = append(out.Steps, stepAnalyticsJSON{
			Name: s.GetName(), Attempts: s.GetAttempts(), Retries: s.GetRetries(), Failures: s.GetFailures(),
			Running: toPercentilesJSON(s.GetRunning()), QueueWait: toPercentilesJSON(s.GetQueueWait()),
			CriticalPathShare: s.GetCriticalPathShare(),
		})
	}
	for _, e := range a.GetTopErrors() {
		out.TopErrors = append(out.TopErrors, errorCountJSON{Step: e.GetStepName(), Class: e.GetErrorClass(), Message: e.GetMessage(), Count: e.GetCount()})
	}
	return out
}

// writeAnalytics prints the numbers for a person: a summary, a line per
// step, the top failures.
func writeAnalytics(w io.Writer, a *coordinatorv1.TemplateAnalytics) error {
	ref := templateRef{namespace: a.GetNamespace(), name: a.GetName(), version: a.GetVersion()}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s to %s\n", ref, shortTime(a.GetSince()), shortTime(a.GetUntil()))
	fmt.Fprintf(&b, "finished %d: complete %d (%s), error %d (%s), cancelled %d (%s), resolved %d; %s/min\n",
		a.GetTasksFinished(), a.GetCompleted(), percent(a.GetSuccessRate()), a.GetErrored(), percent(a.GetErrorRate()),
		a.GetCancelled(), percent(a.GetCancelRate()), a.GetResolved(), perMinute(a.GetThroughputPerMinute()))
	fmt.Fprintf(&b, "duration %s; retry rate %s\n", percentiles(a.GetDuration()), percent(a.GetRetryRate()))
	if a.GetBottleneckStep() != "" {
		fmt.Fprintf(&b, "bottleneck %s (%s of the critical path)\n", a.GetBottleneckStep(), percent(a.GetBottleneckShare()))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if len(a.GetSteps()) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "STEP\tATTEMPTS\tRETRIES\tFAILURES\tRUNNING p50/p95/p99\tQUEUE p50/p95/p99\tCRITICAL PATH")
		for _, s := range a.GetSteps() {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", s.GetName(), s.GetAttempts(), s.GetRetries(), s.GetFailures(),
				triple(s.GetRunning()), triple(s.GetQueueWait()), percent(s.GetCriticalPathShare()))
		}
		if err := flush(tw); err != nil {
			return err
		}
	}
	if len(a.GetTopErrors()) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FAILURES\tSTEP\tCLASS\tMESSAGE")
		for _, e := range a.GetTopErrors() {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.GetCount(), e.GetStepName(), dash(e.GetErrorClass()), oneLine(e.GetMessage()))
		}
		return flush(tw)
	}
	return nil
}

func percent(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

// perMinute writes a rate with the digits that tell it apart from zero,
// as the dashboard does: two tasks in a day are 0.0014/min, not 0.00.
func perMinute(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 0.01:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

// percentiles is "p50 X, p95 Y, p99 Z of N".
func percentiles(p *coordinatorv1.Percentiles) string {
	if p.GetCount() == 0 {
		return "none measured"
	}
	return fmt.Sprintf("p50 %s, p95 %s, p99 %s of %d", roundDuration(p.GetP50().AsDuration()),
		roundDuration(p.GetP95().AsDuration()), roundDuration(p.GetP99().AsDuration()), p.GetCount())
}

// triple is "X/Y/Z", or "-" when nothing was measured.
func triple(p *coordinatorv1.Percentiles) string {
	if p.GetCount() == 0 {
		return "-"
	}
	return roundDuration(p.GetP50().AsDuration()) + "/" + roundDuration(p.GetP95().AsDuration()) + "/" +
		roundDuration(p.GetP99().AsDuration())
}

// roundDuration keeps three significant figures or so: 1.23s, 45.6ms.
func roundDuration(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
