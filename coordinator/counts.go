package coordinator

import (
	"context"
	"fmt"

	"github.com/tasker-go/tasker/store"
)

// countTasks counts stored tasks by state. It reads the store, not the runs
// in memory, so it counts finished tasks and those of other coordinators
// sharing the database too.
func (e *engine) countTasks(ctx context.Context, p *store.TaskCountParams) ([]store.StateCount, error) {
	p.FromID, p.BeforeID = idRange(p.CreatedAfter, p.CreatedBefore, p.FromID, p.BeforeID)
	counts, err := e.store.TaskCount(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	return counts, nil
}
