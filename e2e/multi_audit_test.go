//go:build unix

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/store/postgres"
)

// multiAuditStore opens the run's schema with the PostgreSQL driver and
// replays every task's history (history_test.go) against what was
// submitted: each key stored once, as the shape it was submitted as.
func multiAuditStore(ctx context.Context, url, schema string, subs []multiSubmission) (a *historyAudit, err error) {
	st, err := postgres.Open(ctx, postgres.Config{URL: url, Schema: schema, MaxConns: 4})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer func() { err = errors.Join(err, st.Close()) }()

	want := make([]expectedTask, len(subs))
	for i, s := range subs {
		want[i] = expectedTask{key: s.key, id: s.id, check: func(t *store.Task) string {
			if t.Name != s.shape {
				return fmt.Sprintf("submitted as %s, stored as %s", s.shape, t.Name)
			}
			return ""
		}}
	}
	return auditHistories(ctx, st, historyRules{staleAfter: multiLeaseTTL}, want, nil)
}

// scrapeMetrics reads a coordinator's /metrics and returns its unlabelled
// samples by name.
func scrapeMetrics(ctx context.Context, httpAddr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
