package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-go/tasker/store"
)

// taskView is a task as the API shows it: the task, its steps and its
// transitions, all as of one commit.
type taskView struct {
	task        *store.Task
	steps       []*store.Step
	transitions []*store.Transition
	// waiting says why each waiting step waits, by step id.
	waiting map[string]*waitReason
}

// readTask reads a task with its steps and transitions from the store.
func (e *engine) readTask(ctx context.Context, id string) (*taskView, error) {
	if id == "" {
		return nil, invalidf("id is required")
	}
	// One snapshot, so the states shown are those the last transition
	// shown left: a watcher that follows on from it misses nothing.
	snap, err := e.store.TaskSnapshot(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFoundf("task %s not found", id)
		}
		return nil, err
	}
	v := &taskView{task: snap.Task, steps: snap.Steps, transitions: snap.Transitions}
	if err := e.addWaiting(ctx, v); err != nil {
		return nil, err
	}
	return v, nil
}

// addWaiting says why the view's waiting steps wait. A task running here is
// judged from the run the engine decides with; any other from its stored
// steps, read the same way.
func (e *engine) addWaiting(ctx context.Context, v *taskView) error {
	if v.task.State.Terminal() {
		return nil
	}
	now := e.now()
	// A run busy with a write is not waited for: its stored steps, just
	// read, say the same up to that write.
	if tr := e.lookup(v.task.ID); tr != nil && tr.mu.TryLock() {
		if !tr.done && !tr.broken {
			v.waiting = e.waitingOf(tr, now)
		}
		tr.mu.Unlock()
		if v.waiting != nil {
			return nil
		}
	}
	ct, err := e.templates.get(ctx, v.task.Namespace, v.task.Name, v.task.Version)
	if err != nil {
		return err
	}
	v.waiting = e.waitingOf(newTaskRun(v.task, ct, v.steps), now)
	return nil
}

// taskNamespace says which namespace a task lives in, for authorization.
// A task held in memory costs no read.
func (e *engine) taskNamespace(ctx context.Context, id string) (string, error) {
	if tr := e.lookup(id); tr != nil {
		return tr.tmpl.tmpl.Namespace, nil
	}
	t, err := e.store.TaskGet(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", notFoundf("task %s not found", id)
		}
		return "", err
	}
	return t.Namespace, nil
}

// listTasks reads a page of tasks, newest first. A creation-time range is
// also given to the store as the id range it implies (task ids are UUIDv7,
// which begin with their creation's unix milliseconds), so the primary key
// finds the range instead of every newer task being read and dropped.
func (e *engine) listTasks(ctx context.Context, p *store.TaskListParams) ([]*store.Task, error) {
	p.FromID, p.BeforeID = idRange(p.CreatedAfter, p.CreatedBefore, p.FromID, p.BeforeID)
	return e.store.TaskList(ctx, p)
}

// idRange narrows the id range [fromID, beforeID) ("" unbounded) to ids
// that tasks created in [after, before) may have (a zero time unbounded),
// so a store reads that range of its primary key; created_at still
// decides exactly.
func idRange(after, before time.Time, fromID, beforeID string) (string, string) {
	if !after.IsZero() {
		// An id is made just after its task's creation time is taken, so
		// it is never older than it.
		fromID = max(fromID, idFloor(after))
	}
	if !before.IsZero() {
		// A burst of ids within one millisecond may run a little ahead of
		// the clock; a minute's slack keeps every task created before the
		// bound in the range.
		if bound := idFloor(before.Add(time.Minute)); beforeID == "" || bound < beforeID {
			beforeID = bound
		}
	}
	return fromID, beforeID
}

// idFloor is the smallest UUIDv7 string of a millisecond at or after t: a
// prefix of every id made in t's millisecond, and less than all later ones.
func idFloor(t time.Time) string {
	ms := uint64(max(t.UnixMilli(), 0))
	return fmt.Sprintf("%08x-%04x", ms>>16, ms&0xffff)
}

// snapshot is a task and its steps as its run holds them: what the last
// commit wrote. seq is the sequence number of that commit's last
// transition, 0 when the run has committed nothing yet.
type snapshot struct {
	task    store.Task
	steps   []store.Step
	seq     int64
	waiting map[string]*waitReason
}

// snapshot copies what a run holds. The caller holds tr.mu.
func (e *engine) snapshot(tr *taskRun) *snapshot {
	s := &snapshot{task: tr.task, steps: make([]store.Step, len(tr.steps)), seq: tr.lastSeq}
	for i, st := range tr.steps {
		s.steps[i] = st.Step
	}
	s.waiting = e.waitingOf(tr, e.now())
	return s
}

// view completes a snapshot with the task's transitions up to its commit,
// so an action answers with the task as it left it, not as a later event
// may have changed it since.
func (e *engine) view(ctx context.Context, s *snapshot) (*taskView, error) {
	trs, err := e.store.TransitionList(ctx, &store.TransitionListParams{TaskID: s.task.ID})
	if err != nil {
		return nil, err
	}
	if s.seq > 0 {
		n := len(trs)
		for n > 0 && trs[n-1].Seq > s.seq {
			n--
		}
		trs = trs[:n]
	}
	v := &taskView{task: &s.task, steps: make([]*store.Step, len(s.steps)), transitions: trs, waiting: s.waiting}
	for i := range s.steps {
		v.steps[i] = &s.steps[i]
	}
	return v, nil
}
