package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// coordinatorIDMetadata is the request metadata in which a coordinator names
// itself when it opens an Execute stream.
const coordinatorIDMetadata = "tasker-coordinator-id"

// received is one message from the executor and when it arrived.
type received struct {
	at  time.Time
	msg *executorv1.ExecuteResponse
}

// stream is one Execute stream opened by the kit. A goroutine reads every
// message into msgs; cases wait on conditions over what arrived, never on
// time passing.
type stream struct {
	call   grpc.BidiStreamingClient[executorv1.ExecuteRequest, executorv1.ExecuteResponse]
	cancel context.CancelFunc
	opened time.Time
	// sendMu serializes sends: gRPC allows one sender at a time.
	sendMu sync.Mutex
	// readDone is closed when the reader goroutine has returned.
	readDone chan struct{}

	// mu guards the fields below.
	mu   sync.Mutex
	msgs []received
	// end is the error that ended the read side (io.EOF for a clean end),
	// nil while the stream is open.
	end error
	// changed is closed and replaced whenever msgs or end change.
	changed chan struct{}
}

// openStream opens an Execute stream naming the kit as coordinatorID.
// The stream lives until drop, closeAndDrain or ctx ends.
func openStream(ctx context.Context, client executorv1.ExecutorServiceClient, coordinatorID string) (*stream, error) {
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, coordinatorIDMetadata, coordinatorID))
	opened := time.Now()
	call, err := client.Execute(sctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open Execute stream: %w", err)
	}
	s := &stream{call: call, cancel: cancel, opened: opened, readDone: make(chan struct{}), changed: make(chan struct{})}
	go s.read()
	return s, nil
}

func (s *stream) read() {
	defer close(s.readDone)
	for {
		msg, err := s.call.Recv()
		s.mu.Lock()
		if err != nil {
			s.end = err
		} else {
			s.msgs = append(s.msgs, received{at: time.Now(), msg: msg})
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// send writes one request; an error means the stream is broken.
func (s *stream) send(req *executorv1.ExecuteRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.call.Send(req); err != nil {
		return fmt.Errorf("send on Execute stream: %w", err)
	}
	return nil
}

func (s *stream) execute(step *executorv1.ExecuteStep) error {
	return s.send(&executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_ExecuteStep{ExecuteStep: step}})
}

func (s *stream) cancelStep(step *executorv1.ExecuteStep, reason string) error {
	return s.send(&executorv1.ExecuteRequest{Kind: &executorv1.ExecuteRequest_CancelStep{CancelStep: &executorv1.CancelStep{
		TaskId: step.GetTaskId(), StepId: step.GetStepId(), Attempt: step.GetAttempt(), Reason: reason,
	}}})
}

// snapshot returns what arrived so far and how the stream ended (nil while
// open).
func (s *stream) snapshot() ([]received, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs, s.end
}

// changedCh returns a channel closed at the next message or end.
func (s *stream) changedCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// isEOF reports whether a stream's end error is a clean end.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// waitFor waits until cond holds over what arrived, the stream ends, or
// ctx ends. cond sees every message so far and the end error (nil while
// open); waitFor reports whether cond held.
func (s *stream) waitFor(ctx context.Context, cond func(msgs []received, end error) bool) bool {
	for {
		s.mu.Lock()
		msgs, end, changed := s.msgs, s.end, s.changed
		s.mu.Unlock()
		if cond(msgs, end) {
			return true
		}
		if end != nil {
			return false
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// result waits for the first result for step's attempt and returns it, or
// nil when none came before ctx or the stream ended.
func (s *stream) result(ctx context.Context, step *executorv1.ExecuteStep) *executorv1.StepResult {
	var res *executorv1.StepResult
	s.waitFor(ctx, func(msgs []received, _ error) bool {
		res = firstResult(msgs, step)
		return res != nil
	})
	return res
}

// halfClose ends the kit's side of the stream: no more requests, but the
// executor still owes the results of those sent.
func (s *stream) halfClose() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.call.CloseSend(); err != nil {
		return fmt.Errorf("half-close the stream: %w", err)
	}
	return nil
}

// closeAndDrain half-closes the stream and waits for the executor to end
// it, which it must do once every step sent on it has its result. After a
// nil return every message the executor sent on the stream has been read,
// so counting results is exact.
func (s *stream) closeAndDrain(ctx context.Context) error {
	if err := s.halfClose(); err != nil {
		s.drop()
		return err
	}
	var end error
	if !s.waitFor(ctx, func(_ []received, e error) bool { end = e; return e != nil }) {
		s.drop()
		return errors.New("the executor did not end the stream after the kit half-closed it and every step had its result")
	}
	s.drop()
	if errors.Is(end, io.EOF) {
		return nil
	}
	return fmt.Errorf("the stream ended with an error instead of cleanly: %s", describeErr(end))
}

// drop breaks the stream from the kit's side (an RST_STREAM, as when a
// coordinator dies) and waits for the reader to stop.
func (s *stream) drop() {
	s.cancel()
	<-s.readDone
}

// firstResult is the first result for step's attempt in msgs.
func firstResult(msgs []received, step *executorv1.ExecuteStep) *executorv1.StepResult {
	for _, m := range msgs {
		if r := m.msg.GetStepResult(); r != nil && r.GetStepId() == step.GetStepId() && r.GetAttempt() == step.GetAttempt() {
			return r
		}
	}
	return nil
}

// heartbeats returns the heartbeats in msgs with their arrival times.
func heartbeats(msgs []received) []received {
	var out []received
	for _, m := range msgs {
		if m.msg.GetHeartbeat() != nil {
			out = append(out, m)
		}
	}
	return out
}

// describeErr renders a gRPC error as "Code: message".
func describeErr(err error) string {
	if err == nil {
		return "none"
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}
