package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tasker-go/tasker/store/postgres"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/sqlite"
)

// chaosAudit is what the stored history says about a chaos run: the
// shared replay (history_test.go) plus how long recovery took.
type chaosAudit struct {
	*historyAudit
	// maxRecovery is the longest any unfinished task waited, after a
	// coordinator kill, for its next transition.
	maxRecovery time.Duration
	// interrupted counts (task, coordinator kill) pairs where the task was
	// unfinished at the kill: the sample maxRecovery is taken over.
	interrupted int
}

// chaosRules are what the chaos templates promise: retry_limit attempts for
// every step, and handler failures that say they are on purpose.
var chaosRules = historyRules{maxAttempts: chaosRetryLimit, onPurpose: "fails on purpose"}

// openAuditStore opens the store the coordinator used: a SQLite file, or a
// postgres:// URL (with its search_path schema).
func openAuditStore(ctx context.Context, db, schema string) (store.Store, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return postgres.Open(ctx, postgres.Config{URL: db, Schema: schema})
	}
	return sqlite.Open(ctx, sqlite.Config{Path: db})
}

// auditStore opens the store the coordinator left and checks every task,
// step and transition in it against what was submitted. The coordinator
// must be stopped.
func auditStore(ctx context.Context, db, schema string, subs []submission, kills []time.Time) (a *chaosAudit, err error) {
	st, err := openAuditStore(ctx, db, schema)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer func() { err = errors.Join(err, st.Close()) }()

	want := make([]expectedTask, len(subs))
	for n, s := range subs {
		want[n] = expectedTask{key: s.key, id: s.id, check: func(t *store.Task) string {
			// Each task's context names its place in the submission order.
			if tc, err := decodeTaskContext(t.Context); err != nil || tc.N != n {
				return fmt.Sprintf("stored context %s is not the one submitted (n=%d, err %v)", t.Context, n, err)
			}
			return ""
		}}
	}
	a = &chaosAudit{}
	a.historyAudit, err = auditHistories(ctx, st, chaosRules, want, func(t *store.Task, _ []*store.Step, trs []*store.Transition) {
		a.measureRecovery(t, trs, kills)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// recoveryWindow is how long after a coordinator kill a newly created task
// still counts as waiting on the recovery: a task created just after the
// restart, before any executor is back, waits on the kill too.
const recoveryWindow = 5 * time.Second

// measureRecovery: for each coordinator kill, a task unfinished at that
// moment, or created within recoveryWindow after it, waited from the kill
// (or its creation, if later) until its next transition.
func (a *chaosAudit) measureRecovery(t *store.Task, trs []*store.Transition, kills []time.Time) {
	for _, k := range kills {
		from := k
		if !t.CreatedAt.Before(k) {
			if t.CreatedAt.Sub(k) > recoveryWindow {
				continue
			}
			from = t.CreatedAt
		}
		var next time.Time
		finished := false
		for _, tr := range trs {
			if tr.At.Before(from) || (from.Equal(k) && tr.At.Equal(k)) {
				if tr.StepID == "" && tr.To != state.Pending && tr.To != state.InProgress {
					finished = true
				}
				continue
			}
			next = tr.At
			break
		}
		if finished || next.IsZero() {
			continue
		}
		a.interrupted++
		a.maxRecovery = max(a.maxRecovery, next.Sub(from))
	}
}

// TestChaosAuditMeasuresRecovery: the recovery figure is the wait, from
// a coordinator kill (or a task's creation just after one), to the task's
// next transition.
func TestChaosAuditMeasuresRecovery(t *testing.T) {
	t.Parallel()
	h := cleanHistory()

	a := &chaosAudit{}
	a.measureRecovery(h.task, h.transitions(), []time.Time{h.at.Add(250 * time.Millisecond)})
	require.Equal(t, 50*time.Millisecond, a.maxRecovery, "the kill at 250ms was followed by seq 3 at 300ms")
	require.Equal(t, 1, a.interrupted)

	late := *h.task
	late.CreatedAt = h.at.Add(time.Second)
	trs := h.transitions()
	for _, tr := range trs {
		tr.At = tr.At.Add(time.Second + 600*time.Millisecond) // first dispatch 700ms after creation
	}
	a = &chaosAudit{}
	a.measureRecovery(&late, trs, []time.Time{h.at.Add(900 * time.Millisecond), h.at.Add(-time.Minute)})
	require.Equal(t, 1, a.interrupted, "the kill a minute before creation is not this task's recovery")
	require.Equal(t, 700*time.Millisecond, a.maxRecovery)
}

// taskContext is the context each chaos task carries, kept in a type so
// its shape is documented in one place.
type taskContext struct {
	Seed string `json:"seed"`
	N    int    `json:"n"`
}

// decodeTaskContext reads a stored task context.
func decodeTaskContext(raw json.RawMessage) (taskContext, error) {
	var tc taskContext
	err := json.Unmarshal(raw, &tc)
	return tc, err
}
