package store

import (
	"errors"
	"fmt"
	"time"
)

// TaskListFinishedParams selects the finished tasks of one template in a
// time window, for analytics.
type TaskListFinishedParams struct {
	Namespace string
	Name      string
	// Version, when set, keeps only the tasks of that template version.
	Version string
	// Since and Until bound when the tasks reached their final state:
	// Since ≤ UpdatedAt < Until.
	Since time.Time
	Until time.Time
	// Limit is the most tasks returned, honoured exactly; it must be
	// positive.
	Limit int
}

// Validate checks what every driver needs of TaskListFinished's arguments.
func (p *TaskListFinishedParams) Validate() error {
	if p == nil {
		return errors.New("TaskListFinished: params are nil")
	}
	if p.Namespace == "" || p.Name == "" {
		return fmt.Errorf("TaskListFinished: namespace and name are required (got %q, %q)", p.Namespace, p.Name)
	}
	if p.Limit <= 0 {
		return fmt.Errorf("TaskListFinished: limit %d is not positive", p.Limit)
	}
	return nil
}
