package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
)

// eventJSON is the -o json shape of one event, one object per line.
// Scripts depend on it: change it only compatibly (add fields at the end).
type eventJSON struct {
	// Cursor resumes after this event: tasker events --after CURSOR.
	Cursor    string `json:"cursor"`
	At        string `json:"at"`
	TaskID    string `json:"task_id"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Kind is "task" or "step"; Step is null for a task's own transition.
	Kind string  `json:"kind"`
	Step *string `json:"step"`
	// From is null when there was no previous state.
	From    *string `json:"from"`
	To      string  `json:"to"`
	Attempt int32   `json:"attempt"`
	Reason  string  `json:"reason"`
	Seq     int64   `json:"seq"`
}

func toEventJSON(ev *coordinatorv1.Event) eventJSON {
	tr := ev.GetTransition()
	out := eventJSON{
		Cursor: ev.GetCursor(), At: formatTime(tr.GetAt()), TaskID: tr.GetTaskId(),
		Namespace: ev.GetNamespace(), Name: ev.GetName(), Kind: "task",
		To: statepb.Name(tr.GetToState()), Attempt: tr.GetAttempt(), Reason: tr.GetReason(), Seq: tr.GetSeq(),
	}
	if s := tr.GetStepName(); s != "" {
		out.Kind, out.Step = "step", &s
	}
	if f := statepb.Name(tr.GetFromState()); f != "" {
		out.From = &f
	}
	return out
}

// writeEvent prints one event as a line: cursor, time, task id, template,
// step (or "task"), from → to, reason.
func writeEvent(w io.Writer, ev *coordinatorv1.Event) error {
	tr := ev.GetTransition()
	subject := tr.GetStepName()
	if subject == "" {
		subject = "task"
	}
	from := statepb.Name(tr.GetFromState())
	if from == "" {
		from = "-"
	}
	line := fmt.Sprintf("%s  %s  %s  %s/%s  %-20s  %s → %s", ev.GetCursor(), formatTime(tr.GetAt()), tr.GetTaskId(),
		ev.GetNamespace(), ev.GetName(), subject, from, statepb.Name(tr.GetToState()))
	if r := oneLine(tr.GetReason()); r != "" {
		line += "  " + r
	}
	if _, err := fmt.Fprintln(w, line); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// parseKinds reads --kinds: a comma-separated list of task and step.
func parseKinds(s string) ([]coordinatorv1.EventKind, error) {
	var kinds []coordinatorv1.EventKind
	for _, k := range strings.Split(s, ",") {
		switch strings.TrimSpace(k) {
		case "":
		case "task", "tasks":
			kinds = append(kinds, coordinatorv1.EventKind_EVENT_KIND_TASK)
		case "step", "steps":
			kinds = append(kinds, coordinatorv1.EventKind_EVENT_KIND_STEP)
		default:
			return nil, fmt.Errorf("--kinds: unknown kind %q (want task, step or task,step)", strings.TrimSpace(k))
		}
	}
	return kinds, nil
}

func newEventsCmd(g *globals) *cobra.Command {
	var (
		req   coordinatorv1.SubscribeEventsRequest
		kinds string
		out   outputFlag
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print task and step transitions of all tasks, in commit order",
		Long: "Print the transitions of every task and step, in the order they were committed,\n" +
			"one line each: cursor, time, task id, template, step (or \"task\"), from → to,\n" +
			"reason. Without --follow it prints what is stored and exits; with --follow it\n" +
			"then prints new transitions as they commit, until interrupted (Ctrl-C).\n\n" +
			"Each event has a cursor: --after CURSOR prints what came after it, nothing\n" +
			"missed and nothing twice, on any coordinator of the same database and across\n" +
			"restarts, as long as the coordinator still retains those events\n" +
			"(--event-retention); an older cursor is refused with the oldest one available.",
		Example: "  tasker events --follow --from-now\n" +
			"  tasker events --namespace billing --kinds task -o json\n" +
			"  tasker events --follow --after 184467",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := out.json()
			if err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			if req.Kinds, err = parseKinds(kinds); err != nil {
				return &usageError{err: err, cmd: cmd}
			}
			if req.After != "" && req.FromNow {
				return &usageError{err: errors.New("--after and --from-now cannot be combined"), cmd: cmd}
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				// Following has no end of its own; an explicit --timeout
				// bounds it, as it bounds task watch.
				ctx, cancel := g.waitBound(cmd, ctx)
				defer cancel()
				return streamEvents(ctx, c, &req, func(ev *coordinatorv1.Event) error {
					if asJSON {
						return writeJSONLine(g.env.Stdout, toEventJSON(ev))
					}
					return writeEvent(g.env.Stdout, ev)
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Namespace, "namespace", "", "only events of tasks in this namespace")
	f.StringVar(&req.Name, "template", "", "only events of tasks of this template name")
	f.StringVar(&kinds, "kinds", "", "only these kinds of events: task, step, or task,step (default both)")
	f.BoolVar(&req.Follow, "follow", false, "keep printing new events as they commit, until interrupted")
	f.StringVar(&req.After, "after", "", "start after this cursor (from an earlier event)")
	f.BoolVar(&req.FromNow, "from-now", false, "skip what is stored: start with the next event committed")
	out.register(cmd)
	return cmd
}

// streamEvents calls each for every event until the coordinator ends the
// stream (caught up, without follow) or ctx ends.
func streamEvents(ctx context.Context, c *client, req *coordinatorv1.SubscribeEventsRequest, each func(*coordinatorv1.Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.SubscribeEvents(ctx, req)
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := each(msg.GetEvent()); err != nil {
			return err
		}
	}
}
