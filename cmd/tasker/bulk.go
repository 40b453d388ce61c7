package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
)

// bulkAction is task retry or task cancel applied with --all to every task
// the filters keep: after an outage an operator retries the hundreds of
// tasks it failed, or cancels a template's backlog, without a shell loop
// over task list.
type bulkAction struct {
	all, yes bool
	filters  taskFilterFlags
	// states are the tasks' states the action applies to; verb and done
	// name it in messages ("retry", "retried").
	states     []coordinatorv1.State
	verb, done string
	act        func(ctx context.Context, c *client, id string) error
}

func (b *bulkAction) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&b.all, "all", false, "instead of one ID, "+b.verb+" every task in "+b.stateNames()+" that the filters (--namespace, --name, --since, --until, --search, --context-equals) keep; lists them unless --yes is given too")
	f.BoolVar(&b.yes, "yes", false, "with --all: act, rather than list what would be acted on")
	b.filters.register(cmd)
	for _, name := range []string{"namespace", "name", "search", "since", "until", "context-equals"} {
		fl := f.Lookup(name)
		fl.Usage = "with --all: " + fl.Usage
	}
}

func (b *bulkAction) stateNames() string {
	s := ""
	for i, st := range b.states {
		if i > 0 {
			s += " or "
		}
		s += statepb.Name(st)
	}
	return s
}

// args is the command's Args check: one ID, or none with --all.
func (b *bulkAction) args(cmd *cobra.Command, args []string) error {
	if b.all {
		if len(args) > 0 {
			return fmt.Errorf("give a task ID or --all, not both")
		}
		return nil
	}
	if b.yes {
		return errors.New("--yes goes with --all")
	}
	for _, name := range []string{"namespace", "name", "search", "since", "until", "context-equals"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s filters the tasks of --all; give --all too, or a task ID alone", name)
		}
	}
	return cobra.ExactArgs(1)(cmd, args)
}

// bulkResult is one task's line of a bulk action in JSON.
type bulkResult struct {
	ID     string `json:"id"`
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

// run lists the tasks, then acts on each in turn (or, without --yes,
// prints them). A task that changed state since the listing is refused by
// the coordinator like any other and reported; the rest go on.
func (b *bulkAction) run(cmd *cobra.Command, g *globals, out *outputFlag) error {
	asJSON, err := out.json()
	if err != nil {
		return err
	}
	after, before, err := b.filters.creationBounds(time.Now())
	if err != nil {
		return err
	}
	return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
		var tasks []*coordinatorv1.Task
		for _, st := range b.states {
			req := &coordinatorv1.ListTasksRequest{
				State: st, Namespace: b.filters.namespace, Name: b.filters.name, Search: b.filters.search,
				ContextEquals: b.filters.matches, CreatedAfter: after, CreatedBefore: before,
				Full: !b.yes, // the listing shows each task's steps done
			}
			got, err := listTasks(ctx, g, c, req, maxBulk+1)
			if err != nil {
				return err
			}
			tasks = append(tasks, got...)
		}
		if len(tasks) > maxBulk {
			return fmt.Errorf("more than %d tasks in %s match; narrow with --name, --since or --until and run it again", maxBulk, b.stateNames())
		}
		w, errw := g.env.Stdout, g.env.Stderr
		if len(tasks) == 0 {
			fmt.Fprintf(errw, "no task in %s matches\n", b.stateNames())
			return nil
		}
		if !b.yes {
			if err := writeTasks(w, asJSON, tasks); err != nil {
				return err
			}
			fmt.Fprintf(errw, "%d task(s) would be %s; run again with --yes to %s them\n", len(tasks), b.done, b.verb)
			return nil
		}
		failed := 0
		for i, t := range tasks {
			uctx, cancel := g.unary(ctx)
			err := b.act(uctx, c, t.GetId())
			cancel()
			if ue := g.unreachable(c, err); ue != nil {
				// Nothing after this one would get through either.
				return fmt.Errorf("%s %d of %d task(s), then: %w", b.done, i-failed, len(tasks), ue)
			}
			r := bulkResult{ID: t.GetId(), Result: b.done}
			if err != nil {
				failed++
				r.Result, r.Error = "", rpcErr(err).Error()
			}
			switch {
			case asJSON:
				if err := writeJSONLine(w, r); err != nil {
					return err
				}
			case r.Error != "":
				fmt.Fprintf(w, "%s  not %s: %s\n", r.ID, b.done, r.Error)
			default:
				fmt.Fprintf(w, "%s  %s\n", r.ID, b.done)
			}
		}
		fmt.Fprintf(errw, "%s %d of %d task(s)\n", b.done, len(tasks)-failed, len(tasks))
		if failed > 0 {
			return fmt.Errorf("%d task(s) not %s (each named above)", failed, b.done)
		}
		return nil
	})
}

// maxBulk bounds the tasks one bulk action lists and acts on, so a filter
// left out by mistake does not walk the whole store.
const maxBulk = 10_000
