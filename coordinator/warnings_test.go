package coordinator_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/coordinator"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"
	"github.com/tasker-go/tasker/template/templatepb"
)

// logBuffer collects log output written from many goroutines.
type logBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count is how many logged lines contain every one of parts.
func (l *logBuffer) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.SplitSeq(l.b.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// newLoggedHarness is newHarness with the coordinator's log kept and its
// limits set.
func newLoggedHarness(t *testing.T, limits coordinator.Limits) (*harness, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	st := openSQLite(t)
	h := serveCoordinator(t, coordinator.Config{Store: st, Logger: slog.New(slog.NewTextHandler(logs, nil)), Limits: limits}, nil)
	h.store = st
	return h, logs
}

func protoTemplate(t *testing.T, yaml string) *coordinatorv1.TaskTemplate {
	t.Helper()
	tmpl, err := template.Parse([]byte(yaml))
	require.NoError(t, err)
	p, err := templatepb.ToProto(tmpl)
	require.NoError(t, err)
	return p
}

// validate_only runs every check registration does, answers as
// registration would, and stores nothing.
func TestRegisterTemplateValidateOnly(t *testing.T) {
	t.Parallel()
	h, _ := newLoggedHarness(t, coordinator.Limits{MaxSteps: 2})
	check := func(yaml string) (*coordinatorv1.RegisterTemplateResponse, error) {
		return h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: protoTemplate(t, yaml), ValidateOnly: true})
	}
	requireNothingStored := func() {
		t.Helper()
		resp, err := h.client.ListTemplates(h.ctx, &coordinatorv1.ListTemplatesRequest{})
		require.NoError(t, err)
		require.Empty(t, resp.GetTemplates())
	}
	const good = "namespace: demo\nname: a\nversion: 1.0.0\nsteps:\n  - {name: s, handler: noop}\n"

	resp, err := check(good)
	require.NoError(t, err)
	require.True(t, resp.GetCreated(), "registering would store a new version")
	require.Equal(t, int32(3), resp.GetTemplate().GetSteps()[0].GetRetryLimit(), "answered with defaults filled in, as registration does")
	requireNothingStored()

	for _, tc := range []struct{ name, yaml, want string }{
		{"cycle", "namespace: demo\nname: a\nversion: 1.0.0\nsteps:\n  - {name: s, handler: noop, depends_on: [t]}\n  - {name: t, handler: noop, depends_on: [s]}\n",
			`step "s": depends_on: cycle: s -> t -> s`},
		{"steps limit", "namespace: demo\nname: a\nversion: 1.0.0\nsteps:\n  - {name: s, handler: noop}\n  - {name: t, handler: noop}\n  - {name: u, handler: noop}\n",
			"steps: 3 steps exceed the limit of 2"},
		{"bad version", "namespace: demo\nname: a\nversion: one\nsteps:\n  - {name: s, handler: noop}\n", `version: "one" is not a semantic version`},
	} {
		_, err := check(tc.yaml)
		require.Equal(t, codes.InvalidArgument, status.Code(err), tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	requireNothingStored()

	h.apply(good)
	resp, err = check(good)
	require.NoError(t, err)
	require.False(t, resp.GetCreated(), "identical content: registering would change nothing")

	changed := "namespace: demo\nname: a\nversion: 1.0.0\nsteps:\n  - {name: s, handler: echo}\n"
	_, checkErr := check(changed)
	_, registerErr := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: protoTemplate(t, changed)})
	require.Equal(t, codes.AlreadyExists, status.Code(checkErr))
	require.Equal(t, status.Convert(registerErr).Message(), status.Convert(checkErr).Message(), "the check says what registering says")
}

// A step whose handler no connected executor hosts waits silently for
// ever; registration and task creation now say so, and the coordinator
// logs it once per handler until an executor hosting it has been seen.
func TestUnhostedHandlerWarnings(t *testing.T) {
	t.Parallel()
	h, logs := newLoggedHarness(t, coordinator.Limits{})
	const yaml = "namespace: demo\nname: pay\nversion: 1.0.0\nsteps:\n" +
		"  - {name: validate, handler: noop}\n" +
		"  - {name: charge, handler: charge_card, depends_on: [validate]}\n" +
		"  - {name: refund, handler: charge_card, depends_on: [validate]}\n"
	chargeWarning := `no connected executor hosts handler "charge_card" (steps "charge", "refund"): tasks wait at it until an executor hosting it connects`
	noopWarning := `no connected executor hosts handler "noop" (step "validate"): tasks wait at it until an executor hosting it connects`
	logged := func(handler string) int {
		return logs.count("level=WARN", "no connected executor hosts a handler", "handler="+handler)
	}

	reg, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: protoTemplate(t, yaml)})
	require.NoError(t, err)
	require.Equal(t, []string{noopWarning, chargeWarning}, reg.GetWarnings())
	check, err := h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: protoTemplate(t, yaml), ValidateOnly: true})
	require.NoError(t, err)
	require.Equal(t, reg.GetWarnings(), check.GetWarnings())
	created, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "pay"})
	require.NoError(t, err)
	require.Equal(t, reg.GetWarnings(), created.GetWarnings())
	require.Equal(t, 1, logged("charge_card"), "logged once however often it is met")
	require.Equal(t, 1, logged("noop"))

	// An executor hosting the built-ins (noop among them) connects: only
	// charge_card is still warned about, and only for steps not settled.
	_, stop := h.startExecutor(4, nil)
	task := h.create("demo", "pay", map[string]any{"n": 1})
	again, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "demo", Name: "pay", Context: task.GetContext()})
	require.NoError(t, err)
	require.False(t, again.GetCreated())
	require.Equal(t, []string{chargeWarning}, again.GetWarnings())
	require.Equal(t, 1, logged("noop"))

	// Once its executor has gone, noop is warned about, and logged, again.
	stop()
	require.Eventually(t, func() bool {
		resp, err := h.client.ListExecutors(h.ctx, &coordinatorv1.ListExecutorsRequest{})
		return err == nil && len(resp.GetExecutors()) == 1 && !resp.GetExecutors()[0].GetConnected()
	}, 10*time.Second, 10*time.Millisecond)
	reg, err = h.client.RegisterTemplate(h.ctx, &coordinatorv1.RegisterTemplateRequest{Template: protoTemplate(t, yaml)})
	require.NoError(t, err)
	require.Equal(t, []string{noopWarning, chargeWarning}, reg.GetWarnings())
	require.Equal(t, 2, logged("noop"))
	require.Equal(t, 1, logged("charge_card"))
}
