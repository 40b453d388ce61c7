package coordinator

import (
	"context"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/store"
)

// Bulk actions: CancelTasks and RetryTasks apply the one-task RPC to every
// task a filter keeps, so an operator cleaning up after an outage makes one
// call (REST included) instead of a loop of them. Each task goes through
// the one-task RPC itself: its authorization, its forwarding to the
// coordinator that owns the task, its refusals.

const (
	// defaultBulkLimit and maxBulkLimit bound the tasks one call acts on,
	// so a call's time stays within a client's deadline and a filter that
	// keeps more than intended does not walk the whole store.
	defaultBulkLimit = 1000
	maxBulkLimit     = 10_000
	// bulkParallel is how many tasks a call acts on at once: enough that
	// their writes share group commits, few enough to leave the store to
	// other work.
	bulkParallel = 8
)

// bulkRequest is what CancelTasks and RetryTasks share.
type bulkRequest struct {
	filter *coordinatorv1.TaskFilter
	limit  int32
	dryRun bool
	// states are the task states the action applies to.
	states []state.State
	// act applies the action to one task.
	act func(ctx context.Context, id string) error
}

func (s *server) CancelTasks(ctx context.Context, req *coordinatorv1.CancelTasksRequest) (*coordinatorv1.CancelTasksResponse, error) {
	outcomes, more, err := s.bulk(ctx, bulkRequest{
		filter: req.GetFilter(), limit: req.GetLimit(), dryRun: req.GetDryRun(),
		states: []state.State{state.Pending, state.InProgress},
		act: func(ctx context.Context, id string) error {
			_, err := s.CancelTask(ctx, &coordinatorv1.CancelTaskRequest{Id: id, Reason: req.GetReason()})
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.CancelTasksResponse{Outcomes: outcomes, More: more}, nil
}

func (s *server) RetryTasks(ctx context.Context, req *coordinatorv1.RetryTasksRequest) (*coordinatorv1.RetryTasksResponse, error) {
	outcomes, more, err := s.bulk(ctx, bulkRequest{
		filter: req.GetFilter(), limit: req.GetLimit(), dryRun: req.GetDryRun(),
		states: []state.State{state.Error},
		act: func(ctx context.Context, id string) error {
			_, err := s.RetryTask(ctx, &coordinatorv1.RetryTaskRequest{Id: id, Reason: req.GetReason()})
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.RetryTasksResponse{Outcomes: outcomes, More: more}, nil
}

// bulk lists the tasks r's filter keeps in r's states, newest first, at
// most r.limit, and applies r.act to each (unless r.dryRun), reporting
// each task's outcome in listing order. It reports more when the filter
// keeps more tasks than the limit. A bad request is refused before
// anything is changed.
func (s *server) bulk(ctx context.Context, r bulkRequest) ([]*coordinatorv1.TaskOutcome, bool, error) {
	f := r.filter
	if f == nil || f.GetNamespace() == "" && f.GetName() == "" && f.GetCreatedAfter() == nil &&
		f.GetCreatedBefore() == nil && f.GetSearch() == "" && len(f.GetContextEquals()) == 0 {
		return nil, false, status.Error(codes.InvalidArgument,
			"filter: give at least one of namespace, name, created_after, created_before, search, context_equals (an empty filter would act on every task)")
	}
	limit := int(r.limit)
	switch {
	case limit < 0 || limit > maxBulkLimit:
		return nil, false, status.Errorf(codes.InvalidArgument, "limit: %d is out of range (0 for the default %d, at most %d)", limit, defaultBulkLimit, maxBulkLimit)
	case limit == 0:
		limit = defaultBulkLimit
	}
	namespace, err := s.tasksNamespace(ctx, f.GetNamespace())
	if err != nil {
		return nil, false, err
	}
	filters, err := parseTaskFilters(f.GetCreatedAfter(), f.GetCreatedBefore(), f.GetSearch(), f.GetContextEquals())
	if err != nil {
		return nil, false, prefixStatus(err, "filter.")
	}
	var tasks []*store.Task
	for _, st := range r.states {
		got, err := s.c.engine.listTasks(ctx, &store.TaskListParams{
			State: st, Namespace: namespace, Name: f.GetName(),
			CreatedAfter: filters.createdAfter, CreatedBefore: filters.createdBefore, Key: filters.key, Context: filters.context,
			Limit: limit + 1, // one more says whether there are more
		})
		if err != nil {
			return nil, false, toStatus(err)
		}
		tasks = append(tasks, got...)
	}
	// Newest first across the states, as ListTasks lists: ids are UUIDv7.
	slices.SortFunc(tasks, func(a, b *store.Task) int { return strings.Compare(b.ID, a.ID) })
	more := len(tasks) > limit
	tasks = tasks[:min(len(tasks), limit)]

	outcomes := make([]*coordinatorv1.TaskOutcome, len(tasks))
	for i, t := range tasks {
		outcomes[i] = &coordinatorv1.TaskOutcome{Id: t.ID}
	}
	if r.dryRun {
		return outcomes, more, nil
	}
	next := make(chan *coordinatorv1.TaskOutcome)
	var wg sync.WaitGroup
	for range min(bulkParallel, len(outcomes)) {
		wg.Go(func() {
			for o := range next {
				if err := r.act(ctx, o.Id); err != nil {
					st := status.Convert(err)
					o.Code, o.Error = st.Code().String(), st.Message()
				} else {
					o.Done = true
				}
			}
		})
	}
	for _, o := range outcomes {
		if ctx.Err() != nil {
			break
		}
		next <- o
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		// The caller is gone or out of time: some tasks were acted on and
		// it cannot be told which. A new call lists what is left.
		return nil, false, status.FromContextError(err).Err()
	}
	return outcomes, more, nil
}

// prefixStatus puts prefix before the message of a status error, so the
// field a shared check names is named as it is in this request.
func prefixStatus(err error, prefix string) error {
	st := status.Convert(err)
	return status.Error(st.Code(), prefix+st.Message())
}
