package executor

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// Error classes the SDK itself reports in StepFailure.error_class, exported
// so coordinators, dashboards and tests can match on them.
const (
	// ClassUnknownHandler: the step names a handler this executor does not
	// host. Permanent, since retrying on the same fleet cannot help.
	ClassUnknownHandler = "UnknownHandler"
	// ClassPanic: the handler panicked; retryable, the panic may be transient.
	ClassPanic = "Panic"
	// ClassCancelled: the coordinator cancelled the attempt, or the executor
	// shut down before the handler finished.
	ClassCancelled = "Cancelled"
	// ClassDeadlineExceeded: the step's deadline passed before the handler
	// finished.
	ClassDeadlineExceeded = "DeadlineExceeded"
	// ClassOverCapacity: the coordinator sent more steps than the capacity
	// reported in Describe; retryable, so the step goes elsewhere or later.
	ClassOverCapacity = "ExecutorOverCapacity"
	// ClassShuttingDown: the executor is stopping and takes no new steps.
	ClassShuttingDown = "ShuttingDown"
	// ClassInvalidResult: the handler succeeded but its value is not JSON.
	// Permanent, since the same code returns the same value again.
	ClassInvalidResult = "InvalidResult"
	// ClassResultTooLarge: the handler's results exceed MaxResultBytes.
	// Permanent, since the same code returns the same value again.
	ClassResultTooLarge = "ResultTooLarge"
)

// markedError carries what a handler says about a failure: whether it is
// permanent, how long to wait before a retry and how to classify it. One
// type for the three markers keeps them composable in any order.
type markedError struct {
	err       error
	permanent bool
	backoff   time.Duration
	class     string
}

func (m *markedError) Error() string { return m.err.Error() }

func (m *markedError) Unwrap() error { return m.err }

// Permanent marks err as a failure that retrying cannot fix, so the
// coordinator fails the step instead of scheduling another attempt. It
// returns nil for a nil err, so it can wrap a call's result directly.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, permanent: true}
}

// RetryAfter marks err as retryable after at least d, for example from an
// HTTP Retry-After header; the coordinator uses d instead of the step's
// backoff policy. A d of zero or less adds nothing. Nil err stays nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, backoff: max(d, 0)}
}

// WithClass sets the error_class reported for err, so failures can be
// grouped by kind rather than by Go type. An empty class adds nothing. Nil
// err stays nil.
func WithClass(err error, class string) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, class: class}
}

// failureOf turns a handler error into the wire StepFailure. Markers found
// closer to the surface win over deeper ones; permanent is sticky. Without an
// explicit class, fallbackClass is used, or else the Go type name of the
// innermost error.
func failureOf(err error, fallbackClass string) *executorv1.StepFailure {
	var info failureInfo
	info.inspect(err, 0)
	f := &executorv1.StepFailure{
		Message:    err.Error(),
		ErrorClass: info.class,
		Permanent:  info.permanent,
	}
	if f.ErrorClass == "" {
		f.ErrorClass = fallbackClass
	}
	if f.ErrorClass == "" {
		if info.innermost == nil {
			info.innermost = err
		}
		f.ErrorClass = fmt.Sprintf("%T", info.innermost)
	}
	if info.backoff > 0 {
		f.Backoff = durationpb.New(info.backoff)
	}
	return f
}

// failureInfo accumulates markers while walking an error tree.
type failureInfo struct {
	permanent bool
	backoff   time.Duration
	class     string
	innermost error
}

// maxErrorDepth stops the walk on pathological (cyclic) Unwrap chains.
const maxErrorDepth = 100

// inspect walks err depth-first, left to right, the order errors.Is uses.
func (fi *failureInfo) inspect(err error, depth int) {
	if err == nil || depth > maxErrorDepth {
		return
	}
	if m, ok := err.(*markedError); ok {
		fi.permanent = fi.permanent || m.permanent
		if fi.backoff == 0 {
			fi.backoff = m.backoff
		}
		if fi.class == "" {
			fi.class = m.class
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if next := u.Unwrap(); next != nil {
			fi.inspect(next, depth+1)
			return
		}
	case interface{ Unwrap() []error }:
		if errs := u.Unwrap(); len(errs) > 0 {
			for _, e := range errs {
				fi.inspect(e, depth+1)
			}
			return
		}
	}
	if fi.innermost == nil {
		fi.innermost = err
	}
}
