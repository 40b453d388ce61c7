package coordinator_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

// TestListTasksPagesPastTheLargestPageSize: ListTasks asks the store for one
// task more than the page holds to learn whether a next page exists. At the
// largest page size (1000) that is 1001 rows, so a store that capped its
// answer at 1000 would end the listing there, silently dropping every
// older task.
func TestListTasksPagesPastTheLargestPageSize(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// No executor hosts this handler, so the tasks stay pending and cost
	// one write each.
	h.apply(`
namespace: paging
name: idle
version: 1.0.0
steps:
  - name: only
    handler: nobody_hosts_this
`)
	const tasks, pageSize = 1500, 1000
	ids := make([]string, tasks)
	errs := make([]error, tasks)
	var wg sync.WaitGroup
	const workers = 16
	for w := range workers {
		wg.Go(func() {
			for i := w; i < tasks; i += workers {
				ctx, err := structpb.NewStruct(map[string]any{"n": float64(i)})
				if err != nil {
					errs[i] = err
					continue
				}
				resp, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "paging", Name: "idle", Context: ctx})
				if err != nil {
					errs[i] = fmt.Errorf("create task %d: %w", i, err)
					continue
				}
				ids[i] = resp.GetTask().GetId()
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	slices.Sort(ids)
	slices.Reverse(ids) // newest first, as ListTasks pages

	first, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{PageSize: pageSize})
	require.NoError(t, err)
	require.Equal(t, ids[:pageSize], listedIDs(first))
	require.NotEmpty(t, first.GetNextPageToken(), "1,500 tasks at 1,000 a page have a second page")

	second, err := h.client.ListTasks(h.ctx, &coordinatorv1.ListTasksRequest{PageSize: pageSize, PageToken: first.GetNextPageToken()})
	require.NoError(t, err)
	require.Equal(t, ids[pageSize:], listedIDs(second))
	require.Empty(t, second.GetNextPageToken(), "the second page is the last")
}

func listedIDs(resp *coordinatorv1.ListTasksResponse) []string {
	ids := make([]string, len(resp.GetTasks()))
	for i, task := range resp.GetTasks() {
		ids[i] = task.GetId()
	}
	return ids
}
