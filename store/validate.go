package store

import (
	"errors"
	"fmt"

	"github.com/tasker-go/tasker/state"
)

// Validate checks what every driver needs of TaskCreate's arguments: ids
// present, and steps and transitions that do not name another task.
func (p *TaskCreateParams) Validate() error {
	if p == nil || p.Task == nil {
		return errors.New("TaskCreate: params.Task is nil")
	}
	if p.Task.ID == "" {
		return errors.New("TaskCreate: task ID is required")
	}
	for i, st := range p.Steps {
		if st == nil || st.ID == "" {
			return fmt.Errorf("TaskCreate: task %s step %d has no ID", p.Task.ID, i)
		}
		if st.TaskID != "" && st.TaskID != p.Task.ID {
			return fmt.Errorf("TaskCreate: step %s names task %s, not %s", st.ID, st.TaskID, p.Task.ID)
		}
	}
	for i, tr := range p.Transitions {
		if tr == nil {
			return fmt.Errorf("TaskCreate: task %s transition %d is nil", p.Task.ID, i)
		}
		if tr.TaskID != "" && tr.TaskID != p.Task.ID {
			return fmt.Errorf("TaskCreate: transition %d names task %s, not %s", i, tr.TaskID, p.Task.ID)
		}
	}
	if err := p.validateAdmit(); err != nil {
		return err
	}
	if p.Undispatched != nil {
		return p.Undispatched.Validate()
	}
	return nil
}

// validateAdmit checks that a creation asking for admissions says what to
// store if they are refused.
func (p *TaskCreateParams) validateAdmit() error {
	if len(p.Admit) > 0 && (p.Undispatched == nil || p.Undispatched.Task == nil || p.Undispatched.Task.ID != p.Task.ID) {
		return fmt.Errorf("TaskCreate: task %s asks for admission without an undispatched version of itself", p.Task.ID)
	}
	return nil
}

// Validate checks what every driver needs of TaskAdvance's arguments.
func (p *TaskAdvanceParams) Validate() error {
	if p == nil {
		return errors.New("TaskAdvance: params are nil")
	}
	if p.TaskID == "" {
		return errors.New("TaskAdvance: task ID is required")
	}
	for i, st := range p.NewSteps {
		switch {
		case st == nil || st.ID == "" || st.Name == "" || st.Handler == "":
			return fmt.Errorf("TaskAdvance: task %s new step %d needs an ID, a name and a handler", p.TaskID, i)
		case st.State != state.Pending || st.Attempts != 0 || st.Results != nil || st.Error != nil || len(st.DependsOn) > 0:
			return fmt.Errorf("TaskAdvance: task %s new step %s must be fresh: pending, with no attempts, results, error or dependencies", p.TaskID, st.Name)
		case st.MaxAttempts < 1:
			return fmt.Errorf("TaskAdvance: task %s new step %s needs max attempts of at least 1", p.TaskID, st.Name)
		}
	}
	for i, c := range p.Steps {
		if c == nil || c.StepID == "" {
			return fmt.Errorf("TaskAdvance: task %s step change %d has no step ID", p.TaskID, i)
		}
		if c.Admit != nil && c.To != state.InProgress {
			return fmt.Errorf("TaskAdvance: task %s step change %d asks for admission but moves to %s, not in_progress", p.TaskID, i, c.To)
		}
		if err := validateConsume(p.TaskID, c); err != nil {
			return err
		}
	}
	if p.Admit != nil && (p.Task == nil || p.Task.To != state.InProgress) {
		return fmt.Errorf("TaskAdvance: task %s asks for admission without moving to in_progress", p.TaskID)
	}
	return nil
}

// Validate checks what every driver needs of TaskTake's arguments.
func (p *TaskTakeParams) Validate() error {
	if p == nil || p.Lease == nil {
		return errors.New("TaskTake: a lease is required")
	}
	if p.TaskID == "" {
		return errors.New("TaskTake: task ID is required")
	}
	return nil
}

// Validate checks what every driver needs of TemplateRegister's arguments.
func (p *TemplateRegisterParams) Validate() error {
	if p == nil {
		return errors.New("TemplateRegister: params are nil")
	}
	if p.Namespace == "" || p.Name == "" || p.Version == "" {
		return fmt.Errorf("TemplateRegister: namespace, name and version are required (got %q, %q, %q)",
			p.Namespace, p.Name, p.Version)
	}
	return nil
}

// Validate checks what every driver needs of LeaseAcquire's arguments.
func (p *LeaseAcquireParams) Validate() error {
	if p == nil || p.CoordinatorID == "" || p.TTL <= 0 {
		return errors.New("LeaseAcquire: a coordinator id and a positive TTL are required")
	}
	return nil
}

// Validate checks what every driver needs of LeaseRenew's arguments.
func (p *LeaseRenewParams) Validate() error {
	if p == nil || p.Lease == nil || p.TTL <= 0 {
		return errors.New("LeaseRenew: a lease and a positive TTL are required")
	}
	return nil
}

// Validate checks what every driver needs of TaskClaim's arguments.
func (p *TaskClaimParams) Validate() error {
	if p == nil || p.Lease == nil {
		return errors.New("TaskClaim: a lease is required")
	}
	return nil
}

// Validate checks what every driver needs of TaskDebounce's arguments.
func (p *TaskDebounceParams) Validate() error {
	if p == nil {
		return errors.New("TaskDebounce: params are nil")
	}
	if p.TaskID == "" {
		return errors.New("TaskDebounce: task ID is required")
	}
	if p.RunAt.IsZero() || p.ExpectRunAt.IsZero() {
		return fmt.Errorf("TaskDebounce: task %s: RunAt and ExpectRunAt are required", p.TaskID)
	}
	return nil
}
