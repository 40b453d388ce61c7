package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
	"github.com/tasker-go/tasker/template/templatepb"
)

// maxPageSize is the largest page ListTasks serves.
const maxPageSize = 1000

func newTaskCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Create, inspect and steer tasks",
	}
	cmd.AddCommand(
		newTaskCreateCmd(g),
		newTaskGetCmd(g),
		newTaskListCmd(g),
		newTaskCountCmd(g),
		newTaskWatchCmd(g),
		newTaskCancelCmd(g),
		newTaskRetryCmd(g),
		newTaskSignalCmd(g),
	)
	return cmd
}

func newTaskCreateCmd(g *globals) *cobra.Command {
	var (
		out            outputFlag
		contextFlag    string
		idempotencyKey string
		bypass         []string
		wait           bool
		runAt          string
		delay          time.Duration
		priority       int
		debounceKey    string
		debounce       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create NAMESPACE/NAME[@VERSION]",
		Short: "Start a task from a template",
		Long: "Start a task from a template. Creation is idempotent: a repeat with the same\n" +
			"idempotency key (or, without one, the same template and context) returns the\n" +
			"existing task.\n\n" +
			"--context takes a JSON object inline, @FILE to read it from a file, or - to\n" +
			"read it from stdin (needed for contexts over about 128 KiB, the most one\n" +
			"command-line argument may hold).\n\n" +
			"With --debounce-key K --debounce D, creates of the template with key K fold\n" +
			"into one task while it waits: it starts D after the last of them, with the\n" +
			"last one's context, and each prints that task (\"debounced\" after the first).\n\n" +
			"With --wait, follow the task until it stops, print it, and exit 0 only if it\n" +
			"completed: 3 when it ended in error, 4 cancelled, 5 resolved_manually. An\n" +
			"explicit --timeout bounds the whole wait; when it passes, the task is printed\n" +
			"as it stands and the exit status is 6.\n\n" +
			"Warnings from the coordinator, such as a step handler that no connected\n" +
			"executor hosts, are printed to stderr as \"warning: ...\".",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			ref, err := parseTemplateRef(args[0])
			if err != nil {
				return err
			}
			taskCtx, err := readContext(contextFlag, g.env.Stdin)
			if err != nil {
				return err
			}
			req := &coordinatorv1.CreateTaskRequest{
				Namespace:      ref.namespace,
				Name:           ref.name,
				Version:        ref.version,
				Context:        taskCtx,
				IdempotencyKey: idempotencyKey,
				BypassSteps:    bypass,
				Priority:       int32(priority),
			}
			switch {
			case runAt != "" && cmd.Flags().Changed("delay"):
				return &usageError{err: errors.New("--run-at and --delay: give one or the other"), cmd: cmd}
			case runAt != "":
				at, err := time.Parse(time.RFC3339Nano, runAt)
				if err != nil {
					return fmt.Errorf("--run-at %q: want an RFC 3339 time such as 2026-03-01T12:00:00Z", runAt)
				}
				req.RunAt = timestamppb.New(at)
			case cmd.Flags().Changed("delay"):
				req.Delay = durationpb.New(delay)
			}
			switch {
			case debounceKey != "" && cmd.Flags().Changed("debounce"):
				req.Debounce = &coordinatorv1.Debounce{Key: debounceKey, Delay: durationpb.New(debounce)}
			case debounceKey != "" || cmd.Flags().Changed("debounce"):
				return &usageError{err: errors.New("--debounce-key and --debounce: give both or neither"), cmd: cmd}
			}
			w := g.env.Stdout
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				waitCtx, stopWait := g.waitBound(cmd, ctx)
				defer stopWait()
				uctx, cancel := g.unary(waitCtx)
				resp, err := c.CreateTask(uctx, req)
				cancel()
				if err != nil {
					return err
				}
				printWarnings(g.env.Stderr, resp.GetWarnings())
				task := resp.GetTask()
				if !asJSON {
					verb := "created"
					switch {
					case !resp.GetCreated() && req.GetDebounce() != nil:
						verb = "debounced"
					case !resp.GetCreated():
						verb = "existing"
					}
					fmt.Fprintf(w, "%s task %s %s\n", verb, task.GetId(), taskTemplate(task))
				}
				if !wait {
					if asJSON {
						return writeTask(w, true, task)
					}
					return nil
				}
				final, err := waitTask(waitCtx, g, c, task.GetId(), nil)
				if err != nil {
					if timedOut(ctx, waitCtx, err) {
						return g.reportTimeout(ctx, c, task, func(t *coordinatorv1.Task) error { return writeTask(w, asJSON, t) })
					}
					return err
				}
				if err := writeTask(w, asJSON, final); err != nil {
					return err
				}
				return taskEnded(final)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&contextFlag, "context", "{}", "task context: a JSON object, @FILE to read it from a file, or - to read it from stdin")
	f.StringVar(&idempotencyKey, "idempotency-key", "", "identifies the task; a repeat returns the existing one")
	f.StringArrayVar(&bypass, "bypass", nil, "skippable step to settle as resolved_manually at once (repeatable)")
	f.BoolVar(&wait, "wait", false, "wait until the task stops, print it, and exit non-zero unless it completed (see --help)")
	f.StringVar(&runAt, "run-at", "", "start the task at this RFC 3339 time instead of at once (it is stored now, pending, and can be cancelled)")
	f.DurationVar(&delay, "delay", 0, "start the task after this long instead of at once")
	f.StringVar(&debounceKey, "debounce-key", "", "fold creates of this template with this key into one task until it starts (with --debounce)")
	f.DurationVar(&debounce, "debounce", 0, "with --debounce-key: start the task this long after the last create (at most 24h)")
	f.IntVar(&priority, "priority", 0, "1 (lowest) to 4 (highest): when executor slots are short, higher goes first (default: the template's, else 2)")
	out.register(cmd)
	return cmd
}

// printWarnings prints what the coordinator warned about, one per line.
func printWarnings(w io.Writer, warnings []string) {
	for _, msg := range warnings {
		fmt.Fprintf(w, "warning: %s\n", msg)
	}
}

// waitBound bounds a whole wait (task create --wait, task watch) by
// --timeout when the flag was given. Without it a wait has no limit: a
// task may run for as long as it needs, and the default --timeout is meant
// for single calls.
func (g *globals) waitBound(cmd *cobra.Command, ctx context.Context) (context.Context, context.CancelFunc) {
	if !cmd.Flags().Changed("timeout") || g.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, g.timeout)
}

// finalReadTimeout bounds the read of a task's state after its wait timed
// out, the wait's own deadline having passed.
const finalReadTimeout = 5 * time.Second

// timedOut reports whether err ended a wait because the bound waitBound put
// on it passed. The coordinator may end a stream on the deadline it was
// sent a moment before the client's own timer fires, so a DeadlineExceeded
// status counts too; without a bound, such an error is a single call's
// timeout and not the wait's.
func timedOut(parent, wait context.Context, err error) bool {
	if parent.Err() != nil {
		return false
	}
	if _, bounded := wait.Deadline(); !bounded {
		return false
	}
	return errors.Is(wait.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		status.Code(err) == codes.DeadlineExceeded
}

// reportTimeout reports a wait that --timeout cut short: it reads the task
// as it stands, hands it to show, and returns the error that exits with
// exitTimeout naming the task and its state.
func (g *globals) reportTimeout(ctx context.Context, c *client, task *coordinatorv1.Task, show func(*coordinatorv1.Task) error) error {
	rctx, cancel := context.WithTimeout(ctx, finalReadTimeout)
	defer cancel()
	if resp, err := c.GetTask(rctx, &coordinatorv1.GetTaskRequest{Id: task.GetId()}); err == nil {
		task = resp.GetTask()
		if show != nil {
			if err := show(task); err != nil {
				return err
			}
		}
	}
	if st := statepb.Name(task.GetState()); st != "" {
		return &exitError{code: exitTimeout, msg: fmt.Sprintf("task %s is still %s after --timeout %s", task.GetId(), st, g.timeout)}
	}
	return &exitError{code: exitTimeout, msg: fmt.Sprintf("task %s did not stop within --timeout %s", task.GetId(), g.timeout)}
}

// taskEnded turns the state a waited-for or watched task stopped in into
// the command's outcome: nil for complete, else an error with the state's
// own exit status.
func taskEnded(t *coordinatorv1.Task) error {
	st := t.GetState()
	code := exitFailed
	switch st {
	case coordinatorv1.State_STATE_COMPLETE:
		return nil
	case coordinatorv1.State_STATE_ERROR:
		code = exitTaskError
	case coordinatorv1.State_STATE_CANCELLED:
		code = exitTaskCancelled
	case coordinatorv1.State_STATE_RESOLVED_MANUALLY:
		code = exitTaskResolved
	}
	return &exitError{code: code, msg: fmt.Sprintf("task %s ended %s, not complete", t.GetId(), statepb.Name(st))}
}

// readContext reads --context: a JSON object given inline, @FILE to read
// it from a file, or - to read it from stdin. Large contexts need a file:
// one command-line argument holds at most 128 KiB on Linux.
func readContext(flag string, stdin io.Reader) (*structpb.Struct, error) {
	switch {
	case flag == "-":
		if stdin == nil {
			return nil, errors.New("--context -: no stdin")
		}
		data, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("--context -: read stdin: %w", err)
		}
		return parseContext("--context - (stdin)", data)
	case strings.HasPrefix(flag, "@"):
		data, err := os.ReadFile(flag[1:])
		if err != nil {
			return nil, fmt.Errorf("--context %s: %w", flag, err)
		}
		return parseContext("--context "+flag, data)
	default:
		return parseContext("--context", []byte(flag))
	}
}

// parseContext accepts only a JSON object, and says so before any call is
// made, since the coordinator can store nothing else as a context. source
// names where the JSON came from in errors.
func parseContext(source string, data []byte) (*structpb.Struct, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", source, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s has trailing data after the JSON object", source)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s must be a JSON object, got %s", source, templatepb.JSONKind(v))
	}
	st, err := structpb.NewStruct(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return st, nil
}

// parseJSONValue reads any JSON value for a flag such as --results.
func parseJSONValue(flag, s string) (*structpb.Value, error) {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("--%s is not valid JSON: %w", flag, err)
	}
	val, err := structpb.NewValue(v)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return val, nil
}

// rewatchPause spaces out re-opened watches when a stream ends before its
// task stopped (a coordinator restarting, say), so a misbehaving server is
// not hammered.
const rewatchPause = 500 * time.Millisecond

// waitTask follows a task's transitions until it stops and returns the task
// as it finished, calling each (when not nil) with every transition. The
// server ends the stream once the task stops; a stream that ends earlier
// (a coordinator restarting, say) is re-opened after the last transition
// seen.
func waitTask(ctx context.Context, g *globals, c *client, id string, each func(*coordinatorv1.WatchTaskResponse) error) (*coordinatorv1.Task, error) {
	var afterSeq int64
	for {
		err := watchTask(ctx, c, id, afterSeq, func(msg *coordinatorv1.WatchTaskResponse) error {
			afterSeq = max(afterSeq, msg.GetTransition().GetSeq())
			if each != nil {
				return each(msg)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		uctx, cancel := g.unary(ctx)
		resp, err := c.GetTask(uctx, &coordinatorv1.GetTaskRequest{Id: id})
		cancel()
		if err != nil {
			return nil, err
		}
		if statepb.Terminal(resp.GetTask().GetState()) {
			return resp.GetTask(), nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(rewatchPause):
		}
	}
}

// watchTask calls fn for every transition until the server ends the stream.
// It has no timeout: a task may run for as long as it needs.
func watchTask(ctx context.Context, c *client, id string, afterSeq int64, fn func(*coordinatorv1.WatchTaskResponse) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchTask(ctx, &coordinatorv1.WatchTaskRequest{Id: id, AfterSeq: afterSeq})
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
		if err := fn(msg); err != nil {
			return err
		}
	}
}

func newTaskGetCmd(g *globals) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a task and its steps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.showTask(cmd, &out, func(ctx context.Context, c *client) (*coordinatorv1.Task, error) {
				resp, err := c.GetTask(ctx, &coordinatorv1.GetTaskRequest{Id: args[0]})
				return resp.GetTask(), err
			})
		},
	}
	out.register(cmd)
	return cmd
}

func newTaskListCmd(g *globals) *cobra.Command {
	var (
		out       outputFlag
		stateFlag string
		limit     int
		filters   taskFilterFlags
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			st, err := statepb.Parse(stateFlag)
			if err != nil {
				return fmt.Errorf("--state: %w", err)
			}
			if limit <= 0 {
				return fmt.Errorf("--limit must be positive, got %d", limit)
			}
			req := &coordinatorv1.ListTasksRequest{State: st, Namespace: filters.namespace, Name: filters.name, Full: true, Search: filters.search, ContextEquals: filters.matches}
			if req.CreatedAfter, req.CreatedBefore, err = filters.creationBounds(time.Now()); err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				tasks, err := listTasks(ctx, g, c, req, limit)
				if err != nil {
					return err
				}
				return writeTasks(g.env.Stdout, asJSON, tasks)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateFlag, "state", "", "only tasks in this state (pending, in_progress, complete, error, cancelled, resolved_manually)")
	f.IntVar(&limit, "limit", 50, "most tasks to list; pages are followed until it is reached")
	filters.register(cmd)
	out.register(cmd)
	return cmd
}

// taskFilterFlags are the filters task list and task count share.
type taskFilterFlags struct {
	namespace, name, search, since, until string
	matches                               []string
}

func (t *taskFilterFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.namespace, "namespace", "", "only tasks of templates in this namespace")
	f.StringVar(&t.name, "name", "", "only tasks of templates with this name")
	f.StringVar(&t.search, "search", "", "only the task with this id or idempotency key")
	f.StringVar(&t.since, "since", "", "only tasks created at or after this: a duration back from now (24h) or an RFC 3339 time")
	f.StringVar(&t.until, "until", "", "only tasks created before this: a duration back from now or an RFC 3339 time")
	f.StringArrayVar(&t.matches, "context-equals", nil, contextEqualsUsage)
}

// creationBounds reads --since and --until (a duration back from now or an
// RFC 3339 time; empty for no bound).
func (t *taskFilterFlags) creationBounds(now time.Time) (after, before *timestamppb.Timestamp, err error) {
	for _, b := range []struct {
		flag, value string
		dst         **timestamppb.Timestamp
	}{{"--since", t.since, &after}, {"--until", t.until, &before}} {
		if b.value == "" {
			continue
		}
		at, err := parseSince(b.value, now)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", b.flag, err)
		}
		*b.dst = timestamppb.New(at)
	}
	return after, before, nil
}

const contextEqualsUsage = "only tasks whose context holds this, as PATH=VALUE (order_id=A-1, customer.id=c-7, amount=5 for the number, amount='\"5\"' for the string, 'a\\.b=1' for a key holding a dot); repeat for several, all of which must hold. Contexts are not indexed: on a large store narrow by --name or --since too"

func newTaskCountCmd(g *globals) *cobra.Command {
	var (
		out     outputFlag
		filters taskFilterFlags
	)
	cmd := &cobra.Command{
		Use:   "count",
		Short: "Count tasks by state, with the filters of task list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			req := &coordinatorv1.CountTasksRequest{Namespace: filters.namespace, Name: filters.name, Search: filters.search, ContextEquals: filters.matches}
			if req.CreatedAfter, req.CreatedBefore, err = filters.creationBounds(time.Now()); err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				defer cancel()
				resp, err := c.CountTasks(uctx, req)
				if err != nil {
					return err
				}
				return writeCounts(g.env.Stdout, asJSON, resp.GetCounts())
			})
		},
	}
	filters.register(cmd)
	out.register(cmd)
	return cmd
}

// listTasks follows page tokens until limit tasks are collected or the
// listing ends. Each page is its own unary call with its own timeout.
func listTasks(ctx context.Context, g *globals, c *client, req *coordinatorv1.ListTasksRequest, limit int) ([]*coordinatorv1.Task, error) {
	var tasks []*coordinatorv1.Task
	for len(tasks) < limit {
		req.PageSize = int32(min(limit-len(tasks), maxPageSize))
		uctx, cancel := g.unary(ctx)
		resp, err := c.ListTasks(uctx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, resp.GetTasks()...)
		if resp.GetNextPageToken() == "" || len(resp.GetTasks()) == 0 {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if len(tasks) > limit {
		tasks = tasks[:limit]
	}
	return tasks, nil
}

func newTaskWatchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Print a task's transitions until it stops",
		Long: "Print a task's transitions, those already stored first, until the task stops.\n" +
			"Exit status 0 when it completed, 3 when it ended in error, 4 cancelled,\n" +
			"5 resolved_manually; an explicit --timeout bounds the watch (exit status 6).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				waitCtx, stopWait := g.waitBound(cmd, ctx)
				defer stopWait()
				final, err := waitTask(waitCtx, g, c, args[0], func(msg *coordinatorv1.WatchTaskResponse) error {
					return writeTransition(g.env.Stdout, msg.GetTransition())
				})
				if err != nil {
					if timedOut(ctx, waitCtx, err) {
						return g.reportTimeout(ctx, c, &coordinatorv1.Task{Id: args[0]}, nil)
					}
					return err
				}
				return taskEnded(final)
			})
		},
	}
}

func newTaskCancelCmd(g *globals) *cobra.Command {
	var (
		out    outputFlag
		reason string
	)
	bulk := &bulkAction{
		states: []coordinatorv1.State{coordinatorv1.State_STATE_PENDING, coordinatorv1.State_STATE_IN_PROGRESS},
		verb:   "cancel", done: "cancelled",
		act: func(ctx context.Context, c *client, id string) error {
			_, err := c.CancelTask(ctx, &coordinatorv1.CancelTaskRequest{Id: id, Reason: reason})
			return err
		},
	}
	cmd := &cobra.Command{
		Use:   "cancel {ID | --all [filters] [--yes]}",
		Short: "Cancel a task: pending steps are cancelled, running ones abandoned",
		Long: "Cancel a task: pending steps are cancelled, running ones abandoned.\n" +
			"With --all instead of an ID, every pending or in_progress task the filters\n" +
			"keep: listed, or with --yes cancelled one by one.",
		Args: bulk.args,
		RunE: func(cmd *cobra.Command, args []string) error {
			if bulk.all {
				return bulk.run(cmd, g, &out)
			}
			return g.showTask(cmd, &out, func(ctx context.Context, c *client) (*coordinatorv1.Task, error) {
				resp, err := c.CancelTask(ctx, &coordinatorv1.CancelTaskRequest{Id: args[0], Reason: reason})
				return resp.GetTask(), err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded on the transitions")
	bulk.register(cmd)
	out.register(cmd)
	return cmd
}

func newTaskRetryCmd(g *globals) *cobra.Command {
	var (
		out    outputFlag
		reason string
	)
	bulk := &bulkAction{
		states: []coordinatorv1.State{coordinatorv1.State_STATE_ERROR},
		verb:   "retry", done: "retried",
		act: func(ctx context.Context, c *client, id string) error {
			_, err := c.RetryTask(ctx, &coordinatorv1.RetryTaskRequest{Id: id, Reason: reason})
			return err
		},
	}
	cmd := &cobra.Command{
		Use:   "retry {ID | --all [filters] [--yes]}",
		Short: "Move an errored task back to pending; its failed steps get fresh attempts",
		Long: "Move an errored task back to pending; its failed steps get fresh attempts.\n" +
			"With --all instead of an ID, every task in error the filters keep (after an\n" +
			"outage, say): listed, or with --yes retried one by one.",
		Args: bulk.args,
		RunE: func(cmd *cobra.Command, args []string) error {
			if bulk.all {
				return bulk.run(cmd, g, &out)
			}
			return g.showTask(cmd, &out, func(ctx context.Context, c *client) (*coordinatorv1.Task, error) {
				resp, err := c.RetryTask(ctx, &coordinatorv1.RetryTaskRequest{Id: args[0], Reason: reason})
				return resp.GetTask(), err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded on the transitions")
	bulk.register(cmd)
	out.register(cmd)
	return cmd
}

func newTaskSignalCmd(g *globals) *cobra.Command {
	var (
		out     outputFlag
		payload string
	)
	cmd := &cobra.Command{
		Use:   "signal ID SIGNAL",
		Short: "Send a signal to a task: the step waiting for it completes with the payload",
		Long: `Send a named signal to a task. A step declared with wait_for: {signal: SIGNAL}
that waits for it completes with the payload as its result. A signal sent
before its step waits is kept, and consumed when the step waits. Refused for
a finished task, a signal no step declares, or one no step could consume.`,
		Example: `  tasker task signal 0193c5a2-... approved --payload '{"by": "ana"}'`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if payload != "" && !json.Valid([]byte(payload)) {
				return fmt.Errorf("--payload is not valid JSON")
			}
			return g.showTask(cmd, &out, func(ctx context.Context, c *client) (*coordinatorv1.Task, error) {
				resp, err := c.SignalTask(ctx, &coordinatorv1.SignalTaskRequest{Id: args[0], Signal: args[1], Payload: payload})
				if err == nil {
					if by := resp.GetConsumedBy(); by != "" {
						fmt.Fprintf(g.env.Stderr, "signal %s consumed by step %s\n", args[1], by)
					} else {
						fmt.Fprintf(g.env.Stderr, "signal %s kept until a step waits for it\n", args[1])
					}
				}
				return resp.GetTask(), err
			})
		},
	}
	cmd.Flags().StringVar(&payload, "payload", "", "JSON that becomes the result of the step that consumes the signal (default null)")
	out.register(cmd)
	return cmd
}

// parseSince reads a time flag: a duration back from now (24h, 90m) or an
// RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must not be negative", v)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a duration back from now (24h, 90m) or an RFC 3339 time such as 2026-03-01T12:00:00Z", v)
	}
	return t, nil
}
