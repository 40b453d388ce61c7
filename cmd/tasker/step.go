package main

import (
	"context"

	"github.com/spf13/cobra"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

func newStepCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "step",
		Short: "Act on single steps of a task",
	}
	cmd.AddCommand(newStepResolveCmd(g), newStepRerunCmd(g))
	return cmd
}

func newStepResolveCmd(g *globals) *cobra.Command {
	var (
		out     outputFlag
		reason  string
		results string
	)
	cmd := &cobra.Command{
		Use:   "resolve TASK_ID STEP_NAME",
		Short: "Mark a pending or errored step resolved_manually, which satisfies its children",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &coordinatorv1.ResolveStepRequest{TaskId: args[0], StepName: args[1], Reason: reason}
			if cmd.Flags().Changed("results") {
				var err error
				if req.Results, err = parseJSONValue("results", results); err != nil {
					return err
				}
			}
			return g.showTask(cmd, &out, func(ctx context.Context, c *client) (*coordinatorv1.Task, error) {
				resp, err := c.ResolveStep(ctx, req)
				return resp.GetTask(), err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded on the transition")
	cmd.Flags().StringVar(&results, "results", "", "JSON recorded as the step's results for its children")
	out.register(cmd)
	return cmd
}

func newStepRerunCmd(g *globals) *cobra.Command {
	var (
		out    outputFlag
		reason string
	)
	cmd := &cobra.Command{
		Use:   "rerun TASK_ID STEP_NAME",
		Short: "Run a step and everything downstream of it again, keeping the other steps' results",
		Long: `Reset a step and all its descendants to fresh attempts (results and errors
cleared, a new idempotency key for their handlers) and run them again; every
other step keeps its result. A complete or errored task goes back to running.
Refused while the step, a descendant, or (in a running task) anything runs.
The transitions record who asked and why.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &coordinatorv1.RerunStepRequest{TaskId: args[0], StepName: args[1], Reason: reason}
			return g.showTask(cmd, &out, func(ctx context.Context, c *client) (*coordinatorv1.Task, error) {
				resp, err := c.RerunStep(ctx, req)
				return resp.GetTask(), err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded on the transitions with who asked")
	out.register(cmd)
	return cmd
}
