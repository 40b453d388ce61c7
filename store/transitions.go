package store

import "time"

// Transition is the history row c leaves when TaskAdvance applies it to
// task taskID at at under the lease with token leaseToken (0: none). Seq is
// the driver's to fill in; so is StepName when c leaves it empty.
func (c *StepChange) Transition(taskID string, at time.Time, leaseToken int64) *Transition {
	return &Transition{
		TaskID:     taskID,
		StepID:     c.StepID,
		StepName:   c.StepName,
		From:       c.From,
		To:         c.To,
		At:         at,
		Reason:     c.Reason,
		Attempt:    c.Attempts,
		Metadata:   c.Metadata,
		LeaseToken: leaseToken,
	}
}

// Transition is the history row c leaves, as StepChange.Transition.
func (c *TaskChange) Transition(taskID string, at time.Time, leaseToken int64) *Transition {
	return &Transition{
		TaskID:     taskID,
		From:       c.From,
		To:         c.To,
		At:         at,
		Reason:     c.Reason,
		Metadata:   c.Metadata,
		LeaseToken: leaseToken,
	}
}
