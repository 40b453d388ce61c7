package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// rateLimitJSON is the -o json shape of a rate limit, one per line.
type rateLimitJSON struct {
	Name string `json:"name"`
	// Rate is units/period as `limit set --rate` reads it.
	Rate      string `json:"rate"`
	Units     int64  `json:"units"`
	Period    string `json:"period"`
	Burst     int64  `json:"burst"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func toRateLimitJSON(rl *coordinatorv1.RateLimit) rateLimitJSON {
	return rateLimitJSON{
		Name:      rl.GetName(),
		Rate:      formatRate(rl.GetUnits(), rl.GetPeriod().AsDuration()),
		Units:     rl.GetUnits(),
		Period:    rl.GetPeriod().AsDuration().String(),
		Burst:     rl.GetBurst(),
		CreatedAt: formatTime(rl.GetCreatedAt()),
		UpdatedAt: formatTime(rl.GetUpdatedAt()),
	}
}

func newLimitCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "limit",
		Short: "Define and inspect named rate limits that steps draw on",
		Long: "Named rate limits are token buckets shared by every namespace. A step\n" +
			"names one in its template (rate_limits: [{name: stripe, units: 1}]) and\n" +
			"is dispatched only when its units are available.",
	}
	cmd.AddCommand(newLimitSetCmd(g), newLimitGetCmd(g), newLimitListCmd(g), newLimitDeleteCmd(g))
	return cmd
}

func newLimitSetCmd(g *globals) *cobra.Command {
	var (
		out   outputFlag
		rate  string
		burst int64
	)
	cmd := &cobra.Command{
		Use:   "set NAME --rate N/s [--burst B]",
		Short: "Create a rate limit or replace its rate and burst",
		Long: "Create a rate limit or replace its rate and burst. --rate is units per\n" +
			"period: N/s, N/m, N/h or N/<duration> (100/s, 5000/h, 3/250ms). --burst is\n" +
			"the most units the bucket holds, so the most taken at once; it defaults to\n" +
			"N, one period's worth.",
		Example: "  tasker limit set stripe --rate 100/s --burst 20",
		Args:    exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			if rate == "" {
				return &usageError{err: errors.New("--rate is required, e.g. --rate 100/s"), cmd: cmd}
			}
			units, period, err := parseRate(rate)
			if err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			if !cmd.Flags().Changed("burst") {
				burst = units
			}
			req := &coordinatorv1.SetRateLimitRequest{RateLimit: &coordinatorv1.RateLimit{
				Name: args[0], Units: units, Period: durationpb.New(period), Burst: burst,
			}}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.SetRateLimit(uctx, req)
				if err != nil {
					return err
				}
				return writeRateLimit(g.env.Stdout, asJSON, resp.GetRateLimit())
			})
		},
	}
	cmd.Flags().StringVar(&rate, "rate", "", "units per period: N/s, N/m, N/h or N/<duration>")
	cmd.Flags().Int64Var(&burst, "burst", 0, "most units the bucket holds (default: N of --rate)")
	out.register(cmd)
	return cmd
}

func newLimitGetCmd(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one rate limit",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.GetRateLimit(uctx, &coordinatorv1.GetRateLimitRequest{Name: args[0]})
				if err != nil {
					return err
				}
				return writeRateLimit(g.env.Stdout, asJSON, resp.GetRateLimit())
			})
		},
	}
	out.register(cmd)
	return cmd
}

func newLimitListCmd(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List rate limits by name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := out.json()
			if err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.ListRateLimits(uctx, &coordinatorv1.ListRateLimitsRequest{})
				if err != nil {
					return err
				}
				return writeRateLimits(g.env.Stdout, asJSON, resp.GetRateLimits())
			})
		},
	}
	out.register(cmd)
	return cmd
}

func newLimitDeleteCmd(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a rate limit no registered template uses",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				if _, err := c.DeleteRateLimit(uctx, &coordinatorv1.DeleteRateLimitRequest{Name: args[0]}); err != nil {
					return err
				}
				if asJSON {
					return writeJSONLine(g.env.Stdout, struct {
						Name    string `json:"name"`
						Deleted bool   `json:"deleted"`
					}{args[0], true})
				}
				_, err := fmt.Fprintf(g.env.Stdout, "deleted rate limit %s\n", args[0])
				return err
			})
		},
	}
	out.register(cmd)
	return cmd
}

// exactArgs is cobra.ExactArgs with a message naming what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("want %s, got %d arguments", what, len(args))
		}
		return nil
	}
}

func writeRateLimit(w io.Writer, asJSON bool, rl *coordinatorv1.RateLimit) error {
	return writeRateLimits(w, asJSON, []*coordinatorv1.RateLimit{rl})
}

func writeRateLimits(w io.Writer, asJSON bool, limits []*coordinatorv1.RateLimit) error {
	if asJSON {
		for _, rl := range limits {
			if err := writeJSONLine(w, toRateLimitJSON(rl)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRATE\tBURST\tUPDATED")
	for _, rl := range limits {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", rl.GetName(), formatRate(rl.GetUnits(), rl.GetPeriod().AsDuration()),
			rl.GetBurst(), shortTime(rl.GetUpdatedAt()))
	}
	return flush(tw)
}

// parseRate reads N/s, N/m, N/h or N/<Go duration>.
func parseRate(s string) (units int64, period time.Duration, err error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("--rate %q: want units per period, e.g. 100/s, 5000/h or 3/250ms", s)
	}
	units, err = strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	if err != nil || units < 1 {
		return 0, 0, fmt.Errorf("--rate %q: units %q must be a positive whole number", s, n)
	}
	switch per = strings.TrimSpace(per); per {
	case "s":
		period = time.Second
	case "m":
		period = time.Minute
	case "h":
		period = time.Hour
	default:
		period, err = time.ParseDuration(per)
		if err != nil || period <= 0 {
			return 0, 0, fmt.Errorf("--rate %q: period %q must be s, m, h or a positive duration such as 250ms", s, per)
		}
	}
	return units, period, nil
}

// formatRate is parseRate's inverse.
func formatRate(units int64, period time.Duration) string {
	switch period {
	case time.Second:
		return fmt.Sprintf("%d/s", units)
	case time.Minute:
		return fmt.Sprintf("%d/m", units)
	case time.Hour:
		return fmt.Sprintf("%d/h", units)
	}
	return fmt.Sprintf("%d/%s", units, period)
}
