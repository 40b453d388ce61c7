//go:build unix

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// Schedules end to end: real coordinator processes, a cron schedule firing
// every second (the optional seconds field), and an audit of what was
// stored: every fire time the cursor passed has exactly one task, whose
// idempotency key names that fire time, and no task exists for a fire time
// without its run.

// scheduleClient dials a coordinator's gRPC API.
func scheduleClient(t *testing.T, addr string) coordinatorv1.CoordinatorServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return coordinatorv1.NewCoordinatorServiceClient(conn)
}

// scheduleAudit reads a schedule and every task of its template and checks
// that each fire time from first up to the cursor has one run with a task,
// that task's key names it, and every task of the schedule before the
// cursor is its fire time's run. It returns the schedule and how many fire
// times it checked.
func scheduleAudit(ctx context.Context, t *testing.T, c coordinatorv1.CoordinatorServiceClient, name string, first time.Time) (*coordinatorv1.Schedule, int) {
	t.Helper()
	resp, err := c.GetSchedule(ctx, &coordinatorv1.GetScheduleRequest{Name: name, Runs: 1000})
	require.NoError(t, err)
	sched := resp.GetSchedule()
	cursor := sched.GetNextFireTime().AsTime()
	runs := map[time.Time]string{}
	for _, r := range resp.GetRuns() {
		require.Empty(t, r.GetSkipped(), "run at %s skipped", r.GetFireTime().AsTime())
		at := r.GetFireTime().AsTime()
		require.Empty(t, runs[at], "two task runs for fire time %s", at)
		runs[at] = r.GetTaskId()
	}
	tasks, err := c.ListTasks(ctx, &coordinatorv1.ListTasksRequest{Namespace: "tasker", Name: "linear_workflow", PageSize: 1000})
	require.NoError(t, err)
	prefix := "schedule:" + sched.GetId() + ":"
	byFire := map[time.Time]string{}
	for _, task := range tasks.GetTasks() {
		key := task.GetIdempotencyKey()
		require.True(t, strings.HasPrefix(key, prefix), "task %s has key %q", task.GetId(), key)
		at, err := time.Parse(time.RFC3339, strings.TrimPrefix(key, prefix))
		require.NoError(t, err)
		require.Empty(t, byFire[at], "two tasks for fire time %s", at)
		byFire[at] = task.GetId()
		if at.Before(cursor) {
			require.Equal(t, runs[at], task.GetId(), "task of fire time %s is its run's", at)
		}
	}
	n := 0
	for at := first; at.Before(cursor); at = at.Add(time.Second) {
		require.NotEmpty(t, runs[at], "fire time %s has no run", at)
		require.Equal(t, runs[at], byFire[at], "fire time %s", at)
		n++
	}
	return sched, n
}

// waitCursor waits until the schedule's cursor is past at.
func waitCursor(ctx context.Context, t *testing.T, c coordinatorv1.CoordinatorServiceClient, name string, at time.Time) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := c.GetSchedule(ctx, &coordinatorv1.GetScheduleRequest{Name: name, Runs: 1})
		return err == nil && resp.GetSchedule().GetNextFireTime().AsTime().After(at)
	}, 90*time.Second, 50*time.Millisecond, "schedule %s did not pass %s", name, at)
}

// A coordinator on SQLite killed with SIGKILL while its schedule fires
// every second, and started again: every fire time in the window appears
// exactly once as a task (the restart re-fires the cursor's time, and the
// idempotency key collapses it onto a task the killed process created).
func TestScheduleSQLiteKillAcrossFiring(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr := freeAddr(t)
	db := filepath.Join(t.TempDir(), "tasker.db")
	args := []string{"coordinator", "--listen", addr, "--db", db, "--id", "sched-c1", "--log-level", "debug"}
	proc := start(t, "coordinator", args...)
	c := &cluster{t: t, coord: addr}
	client := scheduleClient(t, addr)
	require.Eventually(t, func() bool { _, _, err := c.run("executors"); return err == nil }, 60*time.Second, 100*time.Millisecond)
	c.tasker("template", "apply", filepath.Join(repoRoot(), "examples", "templates", "linear_workflow.yaml"))
	out := c.tasker("schedule", "create", "tick", "--template", "tasker/linear_workflow", "--cron", "* * * * * *",
		"--overlap", "allow", "--catchup-window", "1h", "-o", "json")
	var created struct {
		NextFireTime string `json:"next_fire_time"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)
	first, err := time.Parse(time.RFC3339Nano, created.NextFireTime)
	require.NoError(t, err)

	// Kill it while it fires, twice: each time a few firings after the
	// last start, at a different point of the second (the first just
	// after a fire time, while that firing is being handled), and keep it
	// down across at least two fire times.
	for i, offset := range []time.Duration{0, 600 * time.Millisecond} {
		resp, err := client.GetSchedule(ctx, &coordinatorv1.GetScheduleRequest{Name: "tick", Runs: 1})
		require.NoError(t, err)
		at := resp.GetSchedule().GetNextFireTime().AsTime().Add(2 * time.Second)
		require.Eventually(t, func() bool { return time.Now().After(at.Add(offset)) }, 30*time.Second, time.Millisecond)
		proc.kill()
		killedAt := time.Now()
		require.Eventually(t, func() bool { return time.Since(killedAt) > 2500*time.Millisecond }, 10*time.Second, 50*time.Millisecond)
		proc = start(t, fmt.Sprintf("coordinator-restart-%d", i+1), args...)
		waitCursor(ctx, t, client, "tick", time.Now().Add(time.Second))
	}

	_, n := scheduleAudit(ctx, t, client, "tick", first)
	t.Logf("fire times checked: %d", n)
	require.GreaterOrEqual(t, n, 10)

	// Backfill creates exactly the missing runs: none here, then the
	// ten seconds before the schedule existed.
	out = c.tasker("schedule", "backfill", "tick", "--from", first.Format(time.RFC3339), "--to", time.Now().Format(time.RFC3339Nano), "-o", "json")
	var bf struct {
		Created  []json.RawMessage `json:"created"`
		Existing int               `json:"existing"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &bf))
	require.Empty(t, bf.Created, "every fire time the cursor passed has its task")
	require.GreaterOrEqual(t, bf.Existing, n)
	before := first.Add(-10 * time.Second)
	out = c.tasker("schedule", "backfill", "tick", "--from", before.Format(time.RFC3339), "--to", first.Add(-time.Second).Format(time.RFC3339), "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &bf))
	require.Len(t, bf.Created, 10)
	require.Zero(t, bf.Existing)
	out = c.tasker("schedule", "backfill", "tick", "--from", before.Format(time.RFC3339), "--to", first.Add(-time.Second).Format(time.RFC3339), "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &bf))
	require.Empty(t, bf.Created, "a second backfill creates nothing")
	require.Equal(t, 10, bf.Existing)
	_, m := scheduleAudit(ctx, t, client, "tick", before)
	require.GreaterOrEqual(t, m, n+10)
}

// Three coordinators on one PostgreSQL schema share a schedule firing every
// second: each fire time is one task, and the firings counter, summed over
// the coordinators, counts each once.
func TestScheduleThreeCoordinatorsPostgres(t *testing.T) {
	baseURL := os.Getenv(envTestPostgres)
	if baseURL == "" {
		t.Skipf("%s is not set", envTestPostgres)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	schema := fmt.Sprintf("tasker_sched_%d", time.Now().UnixNano())
	multiCreateSchema(ctx, t, baseURL, schema)
	dbURL, err := withSearchPath(baseURL, schema)
	require.NoError(t, err)
	type coord struct {
		addr, httpAddr string
		client         coordinatorv1.CoordinatorServiceClient
	}
	coords := make([]coord, 3)
	for i := range coords {
		coords[i] = coord{addr: freeAddr(t), httpAddr: freeAddr(t)}
		start(t, fmt.Sprintf("sched-pg-%d", i+1), "coordinator", "--listen", coords[i].addr, "--http-listen", coords[i].httpAddr,
			"--db", dbURL, "--id", fmt.Sprintf("sched-pg-%d", i+1), "--schedule-reload", "200ms", "--log-level", "debug")
		coords[i].client = scheduleClient(t, coords[i].addr)
	}
	for _, co := range coords {
		require.Eventually(t, func() bool {
			_, err := co.client.ListSchedules(ctx, &coordinatorv1.ListSchedulesRequest{})
			return err == nil
		}, 60*time.Second, 100*time.Millisecond)
	}
	c := &cluster{t: t, coord: coords[0].addr}
	c.tasker("template", "apply", filepath.Join(repoRoot(), "examples", "templates", "linear_workflow.yaml"))
	c2 := &cluster{t: t, coord: coords[1].addr}
	// The first fire time is the cursor the create answered: read later,
	// on a loaded machine, the schedule may already have fired.
	out := c2.tasker("schedule", "create", "shared", "--template", "tasker/linear_workflow", "--cron", "* * * * * *", "--overlap", "allow", "-o", "json")
	var created struct {
		NextFireTime time.Time `json:"next_fire_time"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)
	first := created.NextFireTime.UTC()
	require.False(t, first.IsZero(), out)

	// Every coordinator takes part: each has handled (won) some firing.
	require.Eventually(t, func() bool {
		for _, co := range coords {
			if v, err := scrapeFirings(ctx, co.httpAddr, "shared", "created"); err != nil || v == 0 {
				return false
			}
		}
		return true
	}, 90*time.Second, 100*time.Millisecond, "not every coordinator handled a firing")
	waitCursor(ctx, t, coords[0].client, "shared", first.Add(8*time.Second))
	// Pause, so the counters stop where the runs stop.
	_, err = coords[2].client.PauseSchedule(ctx, &coordinatorv1.PauseScheduleRequest{Name: "shared"})
	require.NoError(t, err)
	sched, n := scheduleAudit(ctx, t, coords[0].client, "shared", first)
	t.Logf("fire times checked: %d", n)
	require.GreaterOrEqual(t, n, 8)
	// A firing under way when the pause landed may still create its task
	// (past the audited cursor), so the counter is compared with the
	// schedule's tasks once both have settled.
	var total float64
	var tasks int
	require.Eventually(t, func() bool {
		total = 0
		for _, co := range coords {
			v, err := scrapeFirings(ctx, co.httpAddr, "shared", "created")
			if err != nil {
				return false
			}
			total += v
		}
		list, err := coords[0].client.ListTasks(ctx, &coordinatorv1.ListTasksRequest{Namespace: "tasker", Name: "linear_workflow", PageSize: 1000})
		if err != nil {
			return false
		}
		tasks = 0
		for _, task := range list.GetTasks() {
			if strings.HasPrefix(task.GetIdempotencyKey(), "schedule:"+sched.GetId()+":") {
				tasks++
			}
		}
		return int(total) == tasks && tasks >= n
	}, 10*time.Second, 50*time.Millisecond, "tasker_schedule_firings_total{outcome=created} summed over coordinators (%v) is not the schedule's tasks (%d, audited %d)", total, tasks, n)

	// Backfill through the third coordinator: the ten seconds before the
	// schedule, once.
	from, to := first.Add(-10*time.Second), first.Add(-time.Second)
	bf, err := coords[2].client.BackfillSchedule(ctx, &coordinatorv1.BackfillScheduleRequest{
		Name: "shared", From: timestamppb.New(from), To: timestamppb.New(to)})
	require.NoError(t, err)
	require.Len(t, bf.GetCreated(), 10)
	bf, err = coords[0].client.BackfillSchedule(ctx, &coordinatorv1.BackfillScheduleRequest{
		Name: "shared", From: timestamppb.New(from), To: timestamppb.New(sched.GetNextFireTime().AsTime())})
	require.NoError(t, err)
	require.Empty(t, bf.GetCreated())
	require.Equal(t, int64(10+n), bf.GetExisting())
	_, m := scheduleAudit(ctx, t, coords[1].client, "shared", from)
	require.Equal(t, n+10, m)
}

// scrapeFirings reads tasker_schedule_firings_total for one schedule and
// outcome from a coordinator's /metrics (0 when not yet recorded).
func scrapeFirings(ctx context.Context, httpAddr, schedule, outcome string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "tasker_schedule_firings_total{") ||
			!strings.Contains(line, `schedule="`+schedule+`"`) || !strings.Contains(line, `outcome="`+outcome+`"`) {
			continue
		}
		_, value, _ := strings.Cut(line, "} ")
		return strconv.ParseFloat(strings.TrimSpace(value), 64)
	}
	return 0, sc.Err()
}
