package state

// A rerun is an operator's request to run a step and everything downstream
// of it again, keeping every other step's result. It moves finished steps
// back to pending, which the ordinary tables refuse on purpose: nothing the
// engine decides by itself may undo a completion. So the rerun moves live
// in tables of their own, consulted only by the rerun action, and the
// ordinary tables stay as strict as before.

// stepRerun lists the states a step in the rerun set (the step named and
// its descendants) is reset from, to pending with fresh attempts. A pending
// step is left as it is (it has not finished, so there is nothing to run
// again); a step in progress refuses the whole rerun (its result is still
// coming); a cancelled step belongs to a cancelled task, which is not rerun.
var stepRerun = map[State]bool{
	Complete:         true,
	Error:            true,
	ResolvedManually: true,
	// A branch a decision did not take: rerunning the decision (or a step
	// above it) lets it choose again.
	Skipped: true,
}

// taskRerun lists the states a task goes back to pending from when one of
// its steps is rerun. A task still pending or in progress stays as it is:
// the reset steps join the work it has.
var taskRerun = map[State]bool{
	Complete: true,
	Error:    true,
}

// StepRerun judges resetting a step in state from to pending for a rerun:
// Applied for a finished step (complete, error, resolved_manually,
// skipped),
// NotApplied for a pending one (left as it is), Refused otherwise.
func StepRerun(from State) Outcome {
	switch {
	case stepRerun[from]:
		return Applied
	case from == Pending:
		return NotApplied
	default:
		return Refused
	}
}

// TaskRerun judges moving a task in state from back to pending because a
// step of it is rerun: Applied for a complete or errored task, NotApplied
// for one still pending or in progress, Refused for a cancelled or
// resolved_manually one.
func TaskRerun(from State) Outcome {
	switch {
	case taskRerun[from]:
		return Applied
	case from == Pending || from == InProgress:
		return NotApplied
	default:
		return Refused
	}
}
