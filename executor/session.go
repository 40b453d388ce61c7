package executor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"time"

	"google.golang.org/grpc/metadata"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// A server-side Send succeeding only means the message reached the local
// transport: results sent just before a stream broke may never have reached
// the coordinator. When a stream ends abnormally, the results it sent within
// resendWindow (at most maxResend of them) are delivered again; the
// coordinator ignores the duplicates. The window covers network round trips
// and transport buffers with a wide margin.
const (
	resendWindow = 5 * time.Second
	maxResend    = 1024
)

// maxQueuedProgress bounds a stream's outbound queue for progress updates:
// beyond it progress is dropped rather than letting a slow coordinator grow
// memory without bound. Results are never dropped.
const maxQueuedProgress = 1024

// service adapts the Executor to the generated gRPC interface, keeping the
// generated methods off the Executor's public API.
type service struct {
	executorv1.UnimplementedExecutorServiceServer
	e *Executor
}

// Describe reports the handler set, capacity and protocol features.
func (s *service) Describe(ctx context.Context, req *executorv1.DescribeRequest) (*executorv1.DescribeResponse, error) {
	s.e.log.Debug("describe", "coordinator_id", req.GetCoordinatorId(), "peer", peerAddr(ctx))
	return &executorv1.DescribeResponse{
		ExecutorId:      s.e.cfg.ID,
		Handlers:        s.e.handlerNames(),
		Capacity:        int32(min(s.e.cfg.Capacity, math.MaxInt32)),
		Language:        s.e.cfg.Language,
		SdkVersion:      SDKVersion,
		ProtocolVersion: ProtocolVersion,
		Capabilities:    Capabilities(),
		Coordinators:    s.e.cfg.coordinators(),
		MaxReceiveBytes: int64(s.e.cfg.MaxReceiveBytes),
	}, nil
}

// Execute serves one coordinator stream until it ends or the executor
// shuts down.
func (s *service) Execute(stream grpc.BidiStreamingServer[executorv1.ExecuteRequest, executorv1.ExecuteResponse]) error {
	return s.e.serveSession(stream)
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// session is one open Execute stream. Only the stream's own goroutine sends
// on it; everyone else appends to queue and wakes it, which serializes sends
// without making handlers wait on the network.
type session struct {
	id  uint64
	log *slog.Logger
	// coordinatorID names the coordinator that opened the stream (from its
	// metadata); capacity shares and registration are per coordinator.
	coordinatorID string
	// wake has capacity 1: queue grew or inflight dropped.
	wake chan struct{}

	// Guarded by Executor.mu.
	queue  []outbound
	closed bool
	// inflight counts steps admitted on this stream (running or waiting
	// for a slot) whose result has not been handed over yet; a half-closed
	// stream stays up until it is zero.
	inflight int
	progress int
	// announced is the share last sent in a heartbeat on this stream;
	// announce asks the sender to send a heartbeat because it changed.
	announced int32
	announce  bool

	// sent lists recently sent results, oldest first; only the stream's own
	// goroutine touches it.
	sent []sentResult
}

// sentResult is a result sent on a stream, kept for resendWindow.
type sentResult struct {
	res *executorv1.StepResult
	at  time.Time
}

// outbound is one queued message; d is set for results, which must be
// marked delivered once sent.
type outbound struct {
	msg *executorv1.ExecuteResponse
	d   *delivery
}

type executeStream = grpc.BidiStreamingServer[executorv1.ExecuteRequest, executorv1.ExecuteResponse]

// serveSession runs the send side of a stream in this goroutine and the
// receive side in another, and ends the session when the coordinator hangs
// up, a send fails or the executor closes.
func (e *Executor) serveSession(stream executeStream) (err error) {
	ctx := stream.Context()
	s := e.openSession(peerAddr(ctx), coordinatorOf(ctx))
	if s == nil {
		return status.Error(codes.Unavailable, "executor is shutting down")
	}
	// A nil return is a clean end: everything sent was meant to be read.
	defer func() { e.closeSession(s, err != nil) }()
	s.log.Info("execute stream opened")

	recvDone := make(chan error, 1)
	e.recvWG.Go(func() { recvDone <- e.receive(stream, s) })

	heartbeat := time.NewTicker(e.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	halfClosed := false
	for {
		idle, err := e.flush(stream, s)
		if err != nil {
			s.log.Warn("execute stream send failed", "err", err)
			return err
		}
		if halfClosed && idle {
			s.log.Info("execute stream closed by coordinator")
			return nil
		}
		select {
		case <-s.wake:
		case <-heartbeat.C:
			if err := stream.Send(e.heartbeat(s)); err != nil {
				s.log.Warn("execute stream heartbeat failed", "err", err)
				return err
			}
		case err := <-recvDone:
			recvDone = nil
			if !errors.Is(err, io.EOF) {
				s.log.Info("execute stream ended", "err", err)
				return err
			}
			// The coordinator sends no more steps but still wants the
			// results of those it sent: keep the stream until they are out.
			halfClosed = true
		case <-ctx.Done():
			s.log.Info("execute stream ended", "err", context.Cause(ctx))
			return status.FromContextError(ctx.Err()).Err()
		case <-e.closing:
			if _, err := e.flush(stream, s); err != nil {
				return err
			}
			s.log.Info("execute stream closed at shutdown")
			return nil
		}
	}
}

// receive reads the coordinator's requests until the stream ends.
func (e *Executor) receive(stream executeStream, s *session) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		switch k := req.GetKind().(type) {
		case *executorv1.ExecuteRequest_ExecuteStep:
			e.startStep(s, k.ExecuteStep)
		case *executorv1.ExecuteRequest_CancelStep:
			e.cancelStep(k.CancelStep)
		default:
			s.log.Warn("ignoring unknown execute request", "kind", kindName(k))
		}
	}
}

func kindName(k any) string {
	if k == nil {
		return "none"
	}
	return fmt.Sprintf("%T", k)
}

// openSession registers a new stream, moves every pending result into its
// queue (the start of a new stream is one of the two ways a late result
// reaches the coordinator) and queues a heartbeat after them. It returns nil
// once the executor is closed.
func (e *Executor) openSession(peer, coordinatorID string) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.nextSession++
	s := &session{
		id:            e.nextSession,
		log:           e.log.With("stream", e.nextSession, "peer", peer, "coordinator_id", coordinatorID),
		wake:          make(chan struct{}, 1),
		coordinatorID: coordinatorID,
	}
	e.sessions[s] = struct{}{}
	e.setHealthLocked()
	for _, d := range e.pending {
		if !d.done {
			s.queue = append(s.queue, outbound{msg: resultMessage(d.res), d: d})
		}
	}
	e.pending = nil
	// The first heartbeat goes out right behind the pending results instead
	// of one interval later: a restarted coordinator relies on it to learn
	// which attempts still run here before it gives up on them. Built under
	// the same lock, it never lists an attempt whose result is ahead of it.
	s.queue = append(s.queue, outbound{msg: e.heartbeatLocked(s)})
	nudge(s.wake)
	// The other coordinators' shares shrink now; tell them at once.
	e.reannounceLocked()
	return s
}

// closeSession forgets the stream; results still queued on it become
// pending so another path delivers them, and after an abnormal end so do
// the results it sent recently.
func (e *Executor) closeSession(s *session, abnormal bool) {
	var resend []*delivery
	if abnormal {
		cutoff := time.Now().Add(-resendWindow)
		for _, sr := range s.sent {
			if sr.at.After(cutoff) {
				resend = append(resend, e.newResend(sr.res))
			}
		}
	}
	s.sent = nil

	e.mu.Lock()
	s.closed = true
	delete(e.sessions, s)
	e.setHealthLocked()
	moved := 0
	for _, q := range s.queue {
		if q.d != nil && !q.d.done {
			e.pending = append(e.pending, q.d)
			moved++
		}
	}
	s.queue = nil
	e.pending = append(e.pending, resend...)
	// A coordinator whose stream is gone gets no share: the others may use
	// its free slots from now on.
	e.reannounceLocked()
	e.mu.Unlock()
	if moved+len(resend) > 0 {
		s.log.Info("stream closed with results to redeliver", "unsent", moved, "resent", len(resend))
	}
	nudge(e.redeliverWake)
	nudge(e.registerWake)
	if e.hooks.sessionClosed != nil {
		e.hooks.sessionClosed(s.coordinatorID)
	}
}

// flush sends everything queued on s. idle reports that nothing is queued
// and no step admitted on s is still running.
func (e *Executor) flush(stream executeStream, s *session) (idle bool, err error) {
	for {
		e.mu.Lock()
		batch := s.queue
		s.queue = nil
		s.progress = 0
		if s.announce {
			// Behind the results queued so far, built from the same state:
			// the coordinator frees their slots before it reads the share.
			batch = append(batch, outbound{msg: e.heartbeatLocked(s)})
		}
		idle = len(batch) == 0 && s.inflight == 0
		e.mu.Unlock()
		if len(batch) == 0 {
			return idle, nil
		}
		for i, q := range batch {
			if err := stream.Send(q.msg); err != nil {
				e.mu.Lock()
				s.queue = append(batch[i:], s.queue...)
				e.mu.Unlock()
				return false, err
			}
			if q.d != nil {
				e.markDelivered(q.d)
				s.remember(q.d.res)
			}
		}
	}
}

// remember keeps res for a resend should the stream break soon.
func (s *session) remember(res *executorv1.StepResult) {
	now := time.Now()
	cutoff := now.Add(-resendWindow)
	drop := 0
	for drop < len(s.sent) && (s.sent[drop].at.Before(cutoff) || len(s.sent)-drop >= maxResend) {
		drop++
	}
	s.sent = append(s.sent[drop:], sentResult{res: res, at: now})
}

// heartbeat lists every attempt admitted here, whichever stream sent it,
// so a reconnected or restarted coordinator learns which of its attempts
// are still alive and where, and tells the coordinator on s its share.
func (e *Executor) heartbeat(s *session) *executorv1.ExecuteResponse {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.heartbeatLocked(s)
}

// heartbeatLocked builds a heartbeat for s and records the share it
// announces; the caller holds e.mu. Both lists are sorted so consecutive
// heartbeats are easy to compare in logs and tests. Attempts waiting for a
// slot are listed with those running: they were accepted and will answer.
// running_step_ids keeps one entry per step even when two attempts of it
// overlap here, since it names steps, not attempts.
func (e *Executor) heartbeatLocked(s *session) *executorv1.ExecuteResponse {
	running := make([]*executorv1.RunningStep, 0, len(e.admitted))
	for _, r := range e.admitted {
		running = append(running, &executorv1.RunningStep{
			TaskId:  r.req.TaskID,
			StepId:  r.req.StepID,
			Attempt: r.key.attempt,
		})
	}
	slices.SortFunc(running, func(a, b *executorv1.RunningStep) int {
		return cmp.Or(
			cmp.Compare(a.GetTaskId(), b.GetTaskId()),
			cmp.Compare(a.GetStepId(), b.GetStepId()),
			cmp.Compare(a.GetAttempt(), b.GetAttempt()),
		)
	})
	ids := make([]string, 0, len(running))
	for _, rs := range running {
		ids = append(ids, rs.GetStepId())
	}
	slices.Sort(ids)
	s.announced, s.announce = e.shareLocked(s), false
	return &executorv1.ExecuteResponse{Kind: &executorv1.ExecuteResponse_Heartbeat{
		Heartbeat: &executorv1.Heartbeat{RunningStepIds: slices.Compact(ids), Running: running, Capacity: s.announced},
	}}
}

// coordinatorOf reads the coordinator id a stream was opened with.
func coordinatorOf(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(CoordinatorIDMetadata); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// CoordinatorIDMetadata is the request metadata key in which a coordinator
// names itself when it opens an Execute stream.
const CoordinatorIDMetadata = "tasker-coordinator-id"

// sendProgress queues a progress update on the step's stream, if it is
// still open and not backed up.
func (e *Executor) sendProgress(s *session, p *executorv1.StepProgress) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.closed || s.progress >= maxQueuedProgress {
		return
	}
	s.progress++
	s.queue = append(s.queue, outbound{msg: &executorv1.ExecuteResponse{
		Kind: &executorv1.ExecuteResponse_Progress{Progress: p},
	}})
	nudge(s.wake)
}

func resultMessage(res *executorv1.StepResult) *executorv1.ExecuteResponse {
	return &executorv1.ExecuteResponse{Kind: &executorv1.ExecuteResponse_StepResult{StepResult: res}}
}
