package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
)

func newScheduleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Create and steer cron schedules that start tasks",
		Long: "A schedule starts a task from a template at every fire time of a cron\n" +
			"expression, exactly once per fire time (its idempotency key is\n" +
			"schedule:<schedule id>:<fire time>), across coordinator restarts and with\n" +
			"several coordinators.",
	}
	cmd.AddCommand(
		newScheduleCreateCmd(g),
		newScheduleGetCmd(g),
		newScheduleListCmd(g),
		newSchedulePauseCmd(g, true),
		newSchedulePauseCmd(g, false),
		newScheduleDeleteCmd(g),
		newScheduleBackfillCmd(g),
	)
	return cmd
}

func newScheduleCreateCmd(g *globals) *cobra.Command {
	var (
		out         outputFlag
		tmpl        string
		cronExpr    string
		timezone    string
		contextFlag string
		overlap     string
		catchup     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create NAME --template NS/NAME[@V] --cron EXPR",
		Short: "Create a schedule",
		Long: "Create a schedule. --cron takes five fields (minute hour day-of-month month\n" +
			"day-of-week; ranges, lists, steps and names such as MON-FRI), six with a\n" +
			"leading seconds field, or a descriptor (@hourly, @daily, @weekly, @monthly,\n" +
			"@yearly, @every 10m). L, W and # are not supported. --timezone is an IANA\n" +
			"name (default UTC). --overlap says what a firing does while the previous\n" +
			"task is unfinished: skip (default), allow, cancel_previous or buffer_one.\n" +
			"After downtime, fire times up to --catchup-window old still run; older ones\n" +
			"are skipped and counted.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			if tmpl == "" {
				return &usageError{err: fmt.Errorf("--template is required"), cmd: cmd}
			}
			ref, err := parseTemplateRef(tmpl)
			if err != nil {
				return fmt.Errorf("--template: %w", err)
			}
			taskCtx, err := readContext(contextFlag, g.env.Stdin)
			if err != nil {
				return err
			}
			req := &coordinatorv1.CreateScheduleRequest{
				Name: args[0], Namespace: ref.namespace, Template: ref.name, Version: ref.version,
				Cron: cronExpr, Timezone: timezone, Context: taskCtx, Overlap: overlap,
			}
			if cmd.Flags().Changed("catchup-window") {
				req.CatchupWindow = durationpb.New(catchup)
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.CreateSchedule(uctx, req)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSONLine(g.env.Stdout, toScheduleJSON(resp.GetSchedule()))
				}
				s := resp.GetSchedule()
				_, err = fmt.Fprintf(g.env.Stdout, "created schedule %s (%s) %s, next fire time %s\n",
					s.GetName(), s.GetId(), s.GetCron(), shortTime(s.GetNextFireTime()))
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&tmpl, "template", "", "template of the tasks, NAMESPACE/NAME[@VERSION] (no version: the highest at each firing)")
	f.StringVar(&cronExpr, "cron", "", `cron expression, e.g. "*/5 * * * *", "0 30 9 * * MON-FRI" or @daily`)
	f.StringVar(&timezone, "timezone", "", "IANA timezone the expression is read in (default UTC)")
	f.StringVar(&contextFlag, "context", "{}", "context of every task: a JSON object, @FILE, or - for stdin")
	f.StringVar(&overlap, "overlap", "skip", "while the previous task is unfinished: skip, allow, cancel_previous or buffer_one")
	f.DurationVar(&catchup, "catchup-window", time.Hour, "after downtime, fire times at most this old still run")
	out.register(cmd)
	return cmd
}

func newScheduleGetCmd(g *globals) *cobra.Command {
	var (
		out  outputFlag
		next int
		runs int
	)
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a schedule, its next fire times and its latest runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.GetSchedule(uctx, &coordinatorv1.GetScheduleRequest{Name: args[0], Next: int32(next), Runs: int32(runs)})
				if err != nil {
					return err
				}
				return writeScheduleDetail(g.env.Stdout, asJSON, resp)
			})
		},
	}
	cmd.Flags().IntVar(&next, "next", 5, "how many coming fire times to show")
	cmd.Flags().IntVar(&runs, "runs", 10, "how many latest runs to show")
	out.register(cmd)
	return cmd
}

func newScheduleListCmd(g *globals) *cobra.Command {
	var (
		out       outputFlag
		namespace string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List schedules by name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.ListSchedules(uctx, &coordinatorv1.ListSchedulesRequest{Namespace: namespace})
				if err != nil {
					return err
				}
				return writeSchedules(g.env.Stdout, asJSON, resp.GetSchedules())
			})
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "", "only schedules of templates in this namespace")
	out.register(cmd)
	return cmd
}

func newSchedulePauseCmd(g *globals, pause bool) *cobra.Command {
	var out outputFlag
	use, short := "pause NAME", "Stop a schedule's firings until it is resumed"
	if !pause {
		use, short = "resume NAME", "Start a paused schedule again from now (fire times missed while paused are skipped)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				var (
					s       *coordinatorv1.Schedule
					skipped int64
				)
				if pause {
					resp, err := c.PauseSchedule(uctx, &coordinatorv1.PauseScheduleRequest{Name: args[0]})
					if err != nil {
						return err
					}
					s = resp.GetSchedule()
				} else {
					resp, err := c.ResumeSchedule(uctx, &coordinatorv1.ResumeScheduleRequest{Name: args[0]})
					if err != nil {
						return err
					}
					s, skipped = resp.GetSchedule(), resp.GetSkipped()
				}
				if asJSON {
					return writeJSONLine(g.env.Stdout, toScheduleJSON(s))
				}
				if pause {
					_, err = fmt.Fprintf(g.env.Stdout, "paused schedule %s\n", s.GetName())
				} else {
					_, err = fmt.Fprintf(g.env.Stdout, "resumed schedule %s, next fire time %s (%d missed while paused, skipped)\n",
						s.GetName(), shortTime(s.GetNextFireTime()), skipped)
				}
				return err
			})
		},
	}
	out.register(cmd)
	return cmd
}

func newScheduleDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a schedule and its runs (the tasks it created are kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				if _, err := c.DeleteSchedule(uctx, &coordinatorv1.DeleteScheduleRequest{Name: args[0]}); err != nil {
					return err
				}
				_, err := fmt.Fprintf(g.env.Stdout, "deleted schedule %s\n", args[0])
				return err
			})
		},
	}
}

func newScheduleBackfillCmd(g *globals) *cobra.Command {
	var (
		out      outputFlag
		from, to string
	)
	cmd := &cobra.Command{
		Use:   "backfill NAME --from T1 --to T2",
		Short: "Create the tasks of past fire times in [T1, T2] that have none",
		Long: "Create the tasks of the fire times in [T1, T2] (both included) that have\n" +
			"none, with the same idempotency keys as the firings, so a repeat creates\n" +
			"nothing. Fire times from the schedule's next one on are left to the\n" +
			"schedule. T1 and T2 are RFC 3339 times or durations back from now (24h).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			now := time.Now()
			req := &coordinatorv1.BackfillScheduleRequest{Name: args[0]}
			for _, b := range []struct {
				flag, value string
				dst         **timestamppb.Timestamp
			}{{"--from", from, &req.From}, {"--to", to, &req.To}} {
				if b.value == "" {
					return &usageError{err: fmt.Errorf("%s is required", b.flag), cmd: cmd}
				}
				at, err := parseSince(b.value, now)
				if err != nil {
					return fmt.Errorf("%s: %w", b.flag, err)
				}
				*b.dst = timestamppb.New(at)
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.BackfillSchedule(uctx, req)
				if err != nil {
					return err
				}
				if asJSON {
					j := backfillJSON{Created: []scheduleRunJSON{}, Existing: resp.GetExisting()}
					for _, r := range resp.GetCreated() {
						j.Created = append(j.Created, toScheduleRunJSON(r))
					}
					return writeJSONLine(g.env.Stdout, j)
				}
				w := g.env.Stdout
				for _, r := range resp.GetCreated() {
					if _, err := fmt.Fprintf(w, "created task %s for %s\n", r.GetTaskId(), shortTime(r.GetFireTime())); err != nil {
						return err
					}
				}
				_, err = fmt.Fprintf(w, "backfilled %d fire times; %d had a task already\n", len(resp.GetCreated()), resp.GetExisting())
				return err
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first fire time considered (RFC 3339, or a duration back from now)")
	cmd.Flags().StringVar(&to, "to", "", "last fire time considered (RFC 3339, or a duration back from now)")
	out.register(cmd)
	return cmd
}

// scheduleJSON is the -o json shape of a schedule; add fields only at the
// end.
type scheduleJSON struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	Template      string         `json:"template"`
	Cron          string         `json:"cron"`
	Timezone      string         `json:"timezone"`
	Context       map[string]any `json:"context"`
	Overlap       string         `json:"overlap"`
	CatchupWindow string         `json:"catchup_window"`
	Paused        bool           `json:"paused"`
	NextFireTime  string         `json:"next_fire_time"`
	// BufferedFireTime is a firing waiting (buffer_one); omitted if none.
	BufferedFireTime string `json:"buffered_fire_time,omitempty"`
	CreatedAt        string `json:"created_at"`
}

type scheduleRunJSON struct {
	FireTime     string `json:"fire_time"`
	TaskID       string `json:"task_id,omitempty"`
	TaskState    string `json:"task_state,omitempty"`
	TaskPruned   bool   `json:"task_pruned,omitempty"`
	Skipped      string `json:"skipped,omitempty"`
	Count        int64  `json:"count"`
	LastFireTime string `json:"last_fire_time,omitempty"`
}

type scheduleDetailJSON struct {
	scheduleJSON
	NextFireTimes []string          `json:"next_fire_times"`
	Runs          []scheduleRunJSON `json:"runs"`
}

type backfillJSON struct {
	Created  []scheduleRunJSON `json:"created"`
	Existing int64             `json:"existing"`
}

func toScheduleJSON(s *coordinatorv1.Schedule) scheduleJSON {
	ctx := s.GetContext().AsMap()
	return scheduleJSON{
		ID: s.GetId(), Name: s.GetName(),
		Template: templateRef{namespace: s.GetNamespace(), name: s.GetTemplate(), version: s.GetVersion()}.String(),
		Cron:     s.GetCron(), Timezone: s.GetTimezone(), Context: ctx, Overlap: s.GetOverlap(),
		CatchupWindow: s.GetCatchupWindow().AsDuration().String(), Paused: s.GetPaused(),
		NextFireTime: formatTime(s.GetNextFireTime()), BufferedFireTime: formatTime(s.GetBufferedFireTime()),
		CreatedAt: formatTime(s.GetCreateTime()),
	}
}

func toScheduleRunJSON(r *coordinatorv1.ScheduleRun) scheduleRunJSON {
	return scheduleRunJSON{
		FireTime: formatTime(r.GetFireTime()), TaskID: r.GetTaskId(), TaskState: statepb.Name(r.GetTaskState()),
		TaskPruned: r.GetTaskPruned(), Skipped: r.GetSkipped(), Count: r.GetCount(), LastFireTime: formatTime(r.GetLastFireTime()),
	}
}

func writeSchedules(w io.Writer, asJSON bool, list []*coordinatorv1.Schedule) error {
	if asJSON {
		for _, s := range list {
			if err := writeJSONLine(w, toScheduleJSON(s)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTEMPLATE\tCRON\tTIMEZONE\tOVERLAP\tPAUSED\tNEXT")
	for _, s := range list {
		tz := s.GetTimezone()
		if tz == "" {
			tz = "UTC"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", s.GetName(),
			templateRef{namespace: s.GetNamespace(), name: s.GetTemplate(), version: s.GetVersion()},
			s.GetCron(), tz, s.GetOverlap(), s.GetPaused(), shortTime(s.GetNextFireTime()))
	}
	return flush(tw)
}

func writeScheduleDetail(w io.Writer, asJSON bool, resp *coordinatorv1.GetScheduleResponse) error {
	if asJSON {
		d := scheduleDetailJSON{scheduleJSON: toScheduleJSON(resp.GetSchedule()), NextFireTimes: []string{}, Runs: []scheduleRunJSON{}}
		for _, t := range resp.GetNextFireTimes() {
			d.NextFireTimes = append(d.NextFireTimes, formatTime(t))
		}
		for _, r := range resp.GetRuns() {
			d.Runs = append(d.Runs, toScheduleRunJSON(r))
		}
		return writeJSONLine(w, d)
	}
	if err := writeSchedules(w, false, []*coordinatorv1.Schedule{resp.GetSchedule()}); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nNEXT FIRE TIMES")
	for _, t := range resp.GetNextFireTimes() {
		fmt.Fprintf(w, "  %s\n", shortTime(t))
	}
	fmt.Fprintln(w, "\nLATEST RUNS")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  FIRE TIME\tTASK\tSTATE\tSKIPPED")
	for _, r := range resp.GetRuns() {
		task, st, skipped := r.GetTaskId(), statepb.Name(r.GetTaskState()), r.GetSkipped()
		switch {
		case task == "":
			task, st = "-", "-"
		case r.GetTaskPruned():
			st = "pruned"
		case st == "":
			st = "-"
		}
		if r.GetCount() > 1 {
			skipped = fmt.Sprintf("%s (%d fire times to %s)", skipped, r.GetCount(), shortTime(r.GetLastFireTime()))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", shortTime(r.GetFireTime()), task, st, oneLine(skipped))
	}
	return flush(tw)
}
