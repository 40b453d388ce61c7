package coordinator

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// codedError carries the gRPC code a failure should be reported with, so the
// engine can say what went wrong without importing transport concerns into
// every call site.
type codedError struct {
	code codes.Code
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func invalidf(format string, args ...any) error {
	return &codedError{codes.InvalidArgument, fmt.Errorf(format, args...)}
}

func preconditionf(format string, args ...any) error {
	return &codedError{codes.FailedPrecondition, fmt.Errorf(format, args...)}
}

func exhaustedf(format string, args ...any) error {
	return &codedError{codes.ResourceExhausted, fmt.Errorf(format, args...)}
}

func notFoundf(format string, args ...any) error {
	return &codedError{codes.NotFound, fmt.Errorf(format, args...)}
}

// toStatus maps an error from the engine or the store onto a gRPC status.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ce *codedError
	var ve *template.ValidationError
	switch {
	case errors.As(err, &ce):
		return status.Error(ce.code, ce.Error())
	case errors.As(err, &ve):
		return status.Error(codes.InvalidArgument, ve.Error())
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrTemplateExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, store.ErrLeaseLost):
		// This coordinator's lease lapsed (it is taking a new one) or the
		// task changed hands under it: nothing was written, and the same
		// call succeeds once ownership is settled.
		return status.Error(codes.Unavailable, err.Error()+"; retry")
	case errors.Is(err, store.ErrOwned):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, store.ErrClosed), errors.Is(err, ErrStopped), errors.Is(err, store.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}
