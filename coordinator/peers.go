package coordinator

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/auth"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
)

// forwardedByMetadata marks a request one coordinator forwarded to the
// owner of its task. A forwarded request is never forwarded again: if
// ownership moved meanwhile, the caller is told to retry.
const forwardedByMetadata = "tasker-forwarded-by"

// peers forwards requests about tasks that another live coordinator owns to
// that coordinator, at the address its lease gives, with the caller's own
// credentials: the owner authorizes the caller as if called directly.
type peers struct {
	self string
	dial []grpc.DialOption

	mu     sync.Mutex // protects conns and closed
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newPeers(self string, dial []grpc.DialOption) *peers {
	return &peers{self: self, dial: dial, conns: map[string]*grpc.ClientConn{}}
}

func (p *peers) client(addr string) (coordinatorv1.CoordinatorServiceClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrStopped
	}
	cc := p.conns[addr]
	if cc == nil {
		var err error
		if cc, err = grpc.NewClient(addr, p.dial...); err != nil {
			return nil, fmt.Errorf("dial coordinator at %s: %w", addr, err)
		}
		p.conns[addr] = cc
	}
	return coordinatorv1.NewCoordinatorServiceClient(cc), nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, cc := range p.conns {
		_ = cc.Close()
	}
	p.conns = nil
}

// forward sends a request to the coordinator that owns its task. call
// makes the request on the owner's client; its answer, success or error,
// is the caller's answer.
func forward[R any](ctx context.Context, p *peers, owned *store.OwnedError, call func(context.Context, coordinatorv1.CoordinatorServiceClient) (R, error)) (R, error) {
	var zero R
	owner := owned.Owner
	in, _ := metadata.FromIncomingContext(ctx)
	if by := in.Get(forwardedByMetadata); len(by) > 0 {
		return zero, status.Errorf(codes.Unavailable,
			"task %s moved to coordinator %s while coordinator %s forwarded the request here; retry", owned.TaskID, owner.CoordinatorID, by[0])
	}
	if owner.Address == "" {
		return zero, status.Errorf(codes.Unavailable,
			"task %s is owned by coordinator %s, which gave no address to forward to (its --advertise); send the request to it", owned.TaskID, owner.CoordinatorID)
	}
	client, err := p.client(owner.Address)
	if err != nil {
		return zero, toStatus(err)
	}
	out := metadata.Pairs(forwardedByMetadata, p.self)
	for _, v := range in.Get(auth.AuthorizationHeader) {
		out.Append(auth.AuthorizationHeader, v)
	}
	resp, err := call(metadata.NewOutgoingContext(ctx, out), client)
	if err != nil {
		st := status.Convert(err)
		return zero, status.Errorf(st.Code(), "coordinator %s at %s (owner of task %s): %s",
			owner.CoordinatorID, owner.Address, owned.TaskID, st.Message())
	}
	return resp, nil
}
