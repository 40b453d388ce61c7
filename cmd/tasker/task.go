package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

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
		newTaskWatchCmd(g),
		newTaskCancelCmd(g),
		newTaskRetryCmd(g),
	)
	return cmd
}

func newTaskCreateCmd(g *globals) *cobra.Command {
	var (
		out            outputFlag
		contextJSON    string
		idempotencyKey string
		bypass         []string
		wait           bool
	)
	cmd := &cobra.Command{
		Use:   "create NAMESPACE/NAME[@VERSION]",
		Short: "Start a task from a template",
		Long: "Start a task from a template. Creation is idempotent: a repeat with the same\n" +
			"idempotency key (or, without one, the same template and context) returns the\n" +
			"existing task. With --wait, follow the task until it stops and exit non-zero\n" +
			"unless it completed.",
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
			taskCtx, err := parseContext(contextJSON)
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
			}
			w := g.env.Stdout
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				uctx, cancel := g.unary(ctx)
				resp, err := c.CreateTask(uctx, req)
				cancel()
				if err != nil {
					return err
				}
				task := resp.GetTask()
				if !asJSON {
					verb := "created"
					if !resp.GetCreated() {
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
				final, err := waitTask(ctx, g, c, task.GetId())
				if err != nil {
					return err
				}
				if err := writeTask(w, asJSON, final); err != nil {
					return err
				}
				if final.GetState() != coordinatorv1.State_STATE_COMPLETE {
					return fmt.Errorf("task %s ended %s, not complete", final.GetId(), statepb.Name(final.GetState()))
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&contextJSON, "context", "{}", "task context, a JSON object")
	f.StringVar(&idempotencyKey, "idempotency-key", "", "identifies the task; a repeat returns the existing one")
	f.StringArrayVar(&bypass, "bypass", nil, "skippable step to settle as resolved_manually at once (repeatable)")
	f.BoolVar(&wait, "wait", false, "wait until the task stops, print it, and fail unless it completed")
	out.register(cmd)
	return cmd
}

// parseContext accepts only a JSON object, and says so before any call is
// made, since the coordinator can store nothing else as a context.
func parseContext(s string) (*structpb.Struct, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("--context is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("--context has trailing data after the JSON object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("--context must be a JSON object, got %s", templatepb.JSONKind(v))
	}
	st, err := structpb.NewStruct(obj)
	if err != nil {
		return nil, fmt.Errorf("--context: %w", err)
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
// as it finished. The server ends the stream once the task stops; a stream
// that ends earlier is re-opened after the last transition seen.
func waitTask(ctx context.Context, g *globals, c *client, id string) (*coordinatorv1.Task, error) {
	var afterSeq int64
	for {
		err := watchTask(ctx, c, id, afterSeq, func(msg *coordinatorv1.WatchTaskResponse) error {
			afterSeq = max(afterSeq, msg.GetTransition().GetSeq())
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
		namespace string
		name      string
		limit     int
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
			req := &coordinatorv1.ListTasksRequest{State: st, Namespace: namespace, Name: name, Full: true}
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
	f.StringVar(&namespace, "namespace", "", "only tasks of templates in this namespace")
	f.StringVar(&name, "name", "", "only tasks of templates with this name")
	f.IntVar(&limit, "limit", 50, "most tasks to list; pages are followed until it is reached")
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
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client) error {
				return watchTask(ctx, c, args[0], 0, func(msg *coordinatorv1.WatchTaskResponse) error {
					return writeTransition(g.env.Stdout, msg.GetTransition())
				})
			})
		},
	}
}

func newTaskCancelCmd(g *globals) *cobra.Command {
	var (
		out    outputFlag
		reason string
	)
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a task: pending steps are cancelled, running ones abandoned",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.showTask(cmd, &out, func(ctx context.Context, c *client) (*coordinatorv1.Task, error) {
				resp, err := c.CancelTask(ctx, &coordinatorv1.CancelTaskRequest{Id: args[0], Reason: reason})
				return resp.GetTask(), err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded on the transitions")
	out.register(cmd)
	return cmd
}

func newTaskRetryCmd(g *globals) *cobra.Command {
	var (
		out    outputFlag
		reason string
	)
	cmd := &cobra.Command{
		Use:   "retry ID",
		Short: "Move an errored task back to pending; its failed steps get fresh attempts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.showTask(cmd, &out, func(ctx context.Context, c *client) (*coordinatorv1.Task, error) {
				resp, err := c.RetryTask(ctx, &coordinatorv1.RetryTaskRequest{Id: args[0], Reason: reason})
				return resp.GetTask(), err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded on the transitions")
	out.register(cmd)
	return cmd
}
