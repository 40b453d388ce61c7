package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
)

// taskJSON is the -o json shape of a task. Scripts depend on it: field names,
// their order and null-versus-empty are part of the CLI's contract, so change
// it only compatibly (add fields at the end).
type taskJSON struct {
	ID        string         `json:"id"`
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Version   string         `json:"version"`
	State     string         `json:"state"`
	Context   map[string]any `json:"context"`
	CreatedAt string         `json:"created_at"`
	// CompletedAt is null unless the coordinator recorded a completion.
	CompletedAt *string `json:"completed_at"`
	// RunAt is when a delayed task was to start; omitted otherwise.
	RunAt string `json:"run_at,omitempty"`
	// Priority is 1 (lowest) to 4; omitted when the coordinator gave none.
	Priority int32 `json:"priority,omitempty"`
	// DebounceKey is the key of a debounced task; omitted otherwise.
	DebounceKey string     `json:"debounce_key,omitempty"`
	Steps       []stepJSON `json:"steps"`
	// ParentTaskID, ParentStepID and ParentStep name, for a child task,
	// the task and step that created it; omitted otherwise.
	ParentTaskID string `json:"parent_task_id,omitempty"`
	ParentStepID string `json:"parent_step_id,omitempty"`
	ParentStep   string `json:"parent_step,omitempty"`
}

// stepJSON is one step inside taskJSON.
type stepJSON struct {
	Name    string `json:"name"`
	Handler string `json:"handler"`
	// DependsOn is [] rather than null for roots.
	DependsOn []string `json:"depends_on"`
	State     string   `json:"state"`
	Attempts  int32    `json:"attempts"`
	// Results is any JSON value, or null when the step has none.
	Results     any              `json:"results"`
	Error       *stepErrorJSON   `json:"error"`
	Transitions []transitionJSON `json:"transitions"`
	// Waiting says why a step that is neither running nor finished waits;
	// omitted otherwise.
	Waiting *waitingJSON `json:"waiting,omitempty"`
	// InstanceOf and Index are set for an instance of a for_each step:
	// the step's name and the instance's place in its list.
	InstanceOf string `json:"instance_of,omitempty"`
	Index      *int32 `json:"index,omitempty"`
	// ChildTaskID is the child task of a step that runs one (task: in
	// its template), as of its latest attempt; omitted otherwise.
	ChildTaskID string `json:"child_task_id,omitempty"`
}

// waitingJSON is a step's waiting reason: {"reason":"parents","on":[…]},
// {"reason":"backoff","until":"…"}, {"reason":"no_executor","handler":"…"}
// or {"reason":"capacity","handler":"…"}.
type waitingJSON struct {
	Reason  string   `json:"reason"`
	On      []string `json:"on,omitempty"`
	Until   string   `json:"until,omitempty"`
	Handler string   `json:"handler,omitempty"`
	Key     string   `json:"key,omitempty"`
}

func toWaitingJSON(w *coordinatorv1.Waiting) *waitingJSON {
	if w == nil {
		return nil
	}
	return &waitingJSON{Reason: w.GetReason(), On: w.GetOn(), Until: formatTime(w.GetUntil()), Handler: w.GetHandler(), Key: w.GetKey()}
}

// waitingText is a waiting reason as the human table shows it.
func waitingText(w *coordinatorv1.Waiting) string {
	switch {
	case w == nil:
		return ""
	case len(w.GetOn()) > 0:
		return w.GetReason() + ": " + strings.Join(w.GetOn(), ", ")
	case w.GetKey() != "" && w.GetUntil() != nil:
		return w.GetReason() + ": " + w.GetKey() + " until " + shortTime(w.GetUntil())
	case w.GetKey() != "":
		return w.GetReason() + ": " + w.GetKey()
	case w.GetUntil() != nil:
		return w.GetReason() + " until " + shortTime(w.GetUntil())
	case w.GetHandler() != "":
		return w.GetReason() + ": " + w.GetHandler()
	default:
		return w.GetReason()
	}
}

// stepErrorJSON is the last failed attempt of a step.
type stepErrorJSON struct {
	Message   string `json:"message"`
	Class     string `json:"class"`
	Retryable bool   `json:"retryable"`
}

// transitionJSON is one stored change of a step's state. From is null when
// the store has no previous state (a step's first transition).
type transitionJSON struct {
	From   *string `json:"from"`
	To     string  `json:"to"`
	At     string  `json:"at"`
	Reason string  `json:"reason"`
}

// formatTime renders ts as RFC 3339 with nanoseconds in UTC; nil is "".
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339Nano)
}

func optionalTime(ts *timestamppb.Timestamp) *string {
	if ts == nil {
		return nil
	}
	s := formatTime(ts)
	return &s
}

// toTaskJSON converts a task from the API into its -o json shape.
func toTaskJSON(t *coordinatorv1.Task) taskJSON {
	ctx := t.GetContext().AsMap()
	out := taskJSON{
		ID:          t.GetId(),
		Namespace:   t.GetNamespace(),
		Name:        t.GetName(),
		Version:     t.GetVersion(),
		State:       statepb.Name(t.GetState()),
		Context:     ctx,
		CreatedAt:   formatTime(t.GetCreatedAt()),
		CompletedAt: optionalTime(t.GetCompletedAt()),
		RunAt:       formatTime(t.GetRunAt()),
		Priority:    t.GetPriority(),
		DebounceKey: t.GetDebounceKey(),
		Steps:       make([]stepJSON, 0, len(t.GetSteps())),

		ParentTaskID: t.GetParentTaskId(),
		ParentStepID: t.GetParentStepId(),
		ParentStep:   t.GetParentStep(),
	}
	for _, s := range t.GetSteps() {
		out.Steps = append(out.Steps, toStepJSON(s))
	}
	return out
}

func toStepJSON(s *coordinatorv1.Step) stepJSON {
	out := stepJSON{
		Name:        s.GetName(),
		Handler:     s.GetHandler(),
		DependsOn:   append([]string{}, s.GetDependsOn()...),
		State:       statepb.Name(s.GetState()),
		Attempts:    s.GetAttempts(),
		Transitions: make([]transitionJSON, 0, len(s.GetTransitions())),
		Waiting:     toWaitingJSON(s.GetWaiting()),
		ChildTaskID: s.GetChildTaskId(),
	}
	if s.GetResults() != nil {
		out.Results = s.GetResults().AsInterface()
	}
	if of := s.GetInstanceOf(); of != "" {
		index := s.GetIndex()
		out.InstanceOf, out.Index = of, &index
	}
	if e := s.GetError(); e != nil {
		out.Error = &stepErrorJSON{Message: e.GetMessage(), Class: e.GetErrorClass(), Retryable: e.GetRetryable()}
	}
	for _, tr := range s.GetTransitions() {
		var from *string
		if tr.GetFromState() != coordinatorv1.State_STATE_UNSPECIFIED {
			f := statepb.Name(tr.GetFromState())
			from = &f
		}
		out.Transitions = append(out.Transitions, transitionJSON{
			From:   from,
			To:     statepb.Name(tr.GetToState()),
			At:     formatTime(tr.GetAt()),
			Reason: tr.GetReason(),
		})
	}
	return out
}

// writeJSONLine writes v as one line of compact JSON, without the HTML
// escaping encoding/json does by default (error messages often hold "<" or
// "&").
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// writeTasks prints tasks as JSON Lines or as the human table.
func writeTasks(w io.Writer, asJSON bool, tasks []*coordinatorv1.Task) error {
	if asJSON {
		for _, t := range tasks {
			if err := writeJSONLine(w, toTaskJSON(t)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTEMPLATE\tSTATE\tSTEPS\tCREATED")
	for _, t := range tasks {
		done, total := stepProgress(t)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", t.GetId(), taskTemplate(t), statepb.Name(t.GetState()), done, total, shortTime(t.GetCreatedAt()))
	}
	return flush(tw)
}

// writeCounts prints tasks by state, in the order of the states, and their
// total: a line each, or one JSON object of state names to counts with
// "total".
func writeCounts(w io.Writer, asJSON bool, counts []*coordinatorv1.StateCount) error {
	var total int64
	for _, c := range counts {
		total += c.GetCount()
	}
	if asJSON {
		m := make(map[string]int64, len(counts)+1)
		for _, c := range counts {
			m[statepb.Name(c.GetState())] = c.GetCount()
		}
		m["total"] = total
		return writeJSONLine(w, m)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tCOUNT")
	for _, c := range counts {
		fmt.Fprintf(tw, "%s\t%d\n", statepb.Name(c.GetState()), c.GetCount())
	}
	fmt.Fprintf(tw, "total\t%d\n", total)
	return flush(tw)
}

// writeTask prints one task: a JSON object, or a header line and one line
// per step.
func writeTask(w io.Writer, asJSON bool, t *coordinatorv1.Task) error {
	if asJSON {
		return writeJSONLine(w, toTaskJSON(t))
	}
	done, total := stepProgress(t)
	fmt.Fprintf(w, "task %s  %s  %s  steps %d/%d  created %s", t.GetId(), taskTemplate(t), statepb.Name(t.GetState()), done, total, shortTime(t.GetCreatedAt()))
	if t.GetCompletedAt() != nil {
		fmt.Fprintf(w, "  completed %s", shortTime(t.GetCompletedAt()))
	}
	if p := t.GetParentTaskId(); p != "" {
		fmt.Fprintf(w, "  child of %s step %s", p, cmp.Or(t.GetParentStep(), t.GetParentStepId()))
	}
	fmt.Fprintln(w)
	if len(t.GetSteps()) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tSTATE\tATTEMPTS\tHANDLER\tWAITING\tERROR")
	for _, s := range t.GetSteps() {
		attempts := fmt.Sprint(s.GetAttempts())
		if s.GetMaxAttempts() > 0 {
			attempts += fmt.Sprintf("/%d", s.GetMaxAttempts())
		}
		handler := s.GetHandler()
		if id := s.GetChildTaskId(); id != "" {
			handler = "child task " + id
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.GetName(), statepb.Name(s.GetState()), attempts, handler,
			waitingText(s.GetWaiting()), oneLine(s.GetError().GetMessage()))
	}
	return flush(tw)
}

// writeTransition prints one watched transition as a line: time, step (or
// "task"), from → to, attempt, reason.
func writeTransition(w io.Writer, tr *coordinatorv1.Transition) error {
	subject := tr.GetStepName()
	if subject == "" {
		subject = "task"
	}
	from := statepb.Name(tr.GetFromState())
	if from == "" {
		from = "-"
	}
	line := fmt.Sprintf("%s  %-20s  %s → %s  attempt %d", formatTime(tr.GetAt()), subject, from, statepb.Name(tr.GetToState()), tr.GetAttempt())
	if r := oneLine(tr.GetReason()); r != "" {
		line += "  " + r
	}
	if _, err := fmt.Fprintln(w, line); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// stepProgress counts the steps that no longer hold up their task:
// complete, resolved manually or skipped.
func stepProgress(t *coordinatorv1.Task) (done, total int) {
	for _, s := range t.GetSteps() {
		if statepb.Settled(s.GetState()) {
			done++
		}
	}
	return done, len(t.GetSteps())
}

func taskTemplate(t *coordinatorv1.Task) string {
	return templateRef{namespace: t.GetNamespace(), name: t.GetName(), version: t.GetVersion()}.String()
}

// shortTime is the table form of a time: UTC to the second.
func shortTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// oneLine keeps a table row on one line whatever a handler put in a message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func flush(tw *tabwriter.Writer) error {
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
