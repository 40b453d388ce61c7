package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// executorJSON is the -o json shape of an executor, one per line.
type executorJSON struct {
	ID          string   `json:"id"`
	Address     string   `json:"address"`
	Language    string   `json:"language"`
	Handlers    []string `json:"handlers"`
	Capacity    int32    `json:"capacity"`
	InFlight    int32    `json:"in_flight"`
	Connected   bool     `json:"connected"`
	ConnectedAt *string  `json:"connected_at"`
	// LastHeard is when its stream last carried anything.
	LastHeard    *string  `json:"last_heard"`
	Coordinators []string `json:"coordinators"`
}

// newExecutorsCmd lists executors. It is plural because "tasker executor"
// is the command that runs one.
func newExecutorsCmd(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "executors",
		Short: "List the executors the coordinator knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.ListExecutors(uctx, &coordinatorv1.ListExecutorsRequest{})
				if err != nil {
					return err
				}
				w := g.env.Stdout
				// Handlers nobody hosts go to stderr, like create's warnings:
				// the output stays parseable.
				defer func() {
					for _, u := range resp.GetUnhosted() {
						fmt.Fprintf(g.env.Stderr, "warning: no connected executor hosts handler %q, used by %s\n", u.GetHandler(), strings.Join(u.GetTemplates(), ", "))
					}
				}()
				if asJSON {
					for _, e := range resp.GetExecutors() {
						line := executorJSON{
							ID:           e.GetId(),
							Address:      e.GetAddress(),
							Language:     e.GetLanguage(),
							Handlers:     append([]string{}, e.GetHandlers()...),
							Capacity:     e.GetCapacity(),
							InFlight:     e.GetInFlight(),
							Connected:    e.GetConnected(),
							ConnectedAt:  optionalTime(e.GetConnectedAt()),
							LastHeard:    optionalTime(e.GetLastHeard()),
							Coordinators: append([]string{}, e.GetCoordinators()...),
						}
						if err := writeJSONLine(w, line); err != nil {
							return err
						}
					}
					return nil
				}
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tADDRESS\tLANGUAGE\tCONNECTED\tLOAD\tHANDLERS")
				for _, e := range resp.GetExecutors() {
					connected := "no"
					if e.GetConnected() {
						connected = "since " + shortTime(e.GetConnectedAt())
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", e.GetId(), e.GetAddress(), e.GetLanguage(), connected,
						e.GetInFlight(), e.GetCapacity(), strings.Join(e.GetHandlers(), ","))
				}
				return flush(tw)
			})
		},
	}
	out.register(cmd)
	return cmd
}
