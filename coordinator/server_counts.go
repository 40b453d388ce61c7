package coordinator

import (
	"context"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state/statepb"
	"github.com/tasker-go/tasker/store"
)

// CountTasks counts tasks by state. It is authorized as ListTasks is: the
// counts of a namespace tell as much as its list does.
func (s *server) CountTasks(ctx context.Context, req *coordinatorv1.CountTasksRequest) (*coordinatorv1.CountTasksResponse, error) {
	namespace, err := s.tasksNamespace(ctx, req.GetNamespace())
	if err != nil {
		return nil, err
	}
	f, err := parseTaskFilters(req.GetCreatedAfter(), req.GetCreatedBefore(), req.GetSearch(), req.GetContextEquals())
	if err != nil {
		return nil, err
	}
	counts, err := s.c.engine.countTasks(ctx, &store.TaskCountParams{
		Namespace: namespace, Name: req.GetName(),
		CreatedAfter: f.createdAfter, CreatedBefore: f.createdBefore, Key: f.key, Context: f.context,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &coordinatorv1.CountTasksResponse{Counts: make([]*coordinatorv1.StateCount, len(counts))}
	for i, c := range counts {
		resp.Counts[i] = &coordinatorv1.StateCount{State: statepb.ToProto(c.State), Count: c.Count}
	}
	return resp, nil
}
