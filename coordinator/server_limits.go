package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// maxRateUnits bounds a limit's units and burst: far above any real rate,
// and small enough that token arithmetic in nanoseconds cannot overflow.
const maxRateUnits = 1_000_000_000

// SetRateLimit creates or replaces a named rate limit. Lowering its burst
// below the units a registered template's step takes is refused: that step
// could never be dispatched again.
func (s *server) SetRateLimit(ctx context.Context, req *coordinatorv1.SetRateLimitRequest) (*coordinatorv1.SetRateLimitResponse, error) {
	p, err := rateLimitParams(req.GetRateLimit())
	if err != nil {
		return nil, err
	}
	if err := s.authorizeGlobal(ctx, "set rate limits"); err != nil {
		return nil, err
	}
	users, err := s.rateLimitUsers(ctx, p.Name, func(u template.RateLimitUse) bool { return int64(u.Units) > p.Burst })
	if err != nil {
		return nil, toStatus(err)
	}
	if len(users) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition,
			"rate_limit.burst: %d is less than the units steps take from %q in %s, which could then never be dispatched; raise the burst or register those templates with fewer units",
			p.Burst, p.Name, strings.Join(users, ", "))
	}
	p.At = s.c.engine.now()
	got, err := s.c.engine.store.RateLimitSet(ctx, p)
	if err != nil {
		return nil, toStatus(err)
	}
	return &coordinatorv1.SetRateLimitResponse{RateLimit: rateLimitProto(got)}, nil
}

// rateLimitParams validates a limit from the API, naming the field at
// fault, and converts it.
func rateLimitParams(rl *coordinatorv1.RateLimit) (*store.RateLimitSetParams, error) {
	if rl == nil {
		return nil, status.Error(codes.InvalidArgument, "rate_limit is required")
	}
	if err := template.CheckName("rate_limit.name", rl.GetName()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if u := rl.GetUnits(); u < 1 || u > maxRateUnits {
		return nil, status.Errorf(codes.InvalidArgument, "rate_limit.units: %d is out of range (want 1 to %d)", u, maxRateUnits)
	}
	if rl.GetPeriod() == nil {
		return nil, status.Error(codes.InvalidArgument, "rate_limit.period: required, e.g. 1s for units per second")
	}
	if err := rl.GetPeriod().CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "rate_limit.period: %v", err)
	}
	period := rl.GetPeriod().AsDuration()
	switch {
	case period <= 0:
		return nil, status.Errorf(codes.InvalidArgument, "rate_limit.period: %s must be positive", period)
	case period%time.Millisecond != 0:
		return nil, status.Errorf(codes.InvalidArgument, "rate_limit.period: %s is not a whole number of milliseconds", period)
	}
	if b := rl.GetBurst(); b < 1 || b > maxRateUnits {
		return nil, status.Errorf(codes.InvalidArgument, "rate_limit.burst: %d is out of range (want 1 to %d)", b, maxRateUnits)
	}
	return &store.RateLimitSetParams{Name: rl.GetName(), Units: rl.GetUnits(), Period: period, Burst: rl.GetBurst()}, nil
}

// GetRateLimit returns one rate limit.
func (s *server) GetRateLimit(ctx context.Context, req *coordinatorv1.GetRateLimitRequest) (*coordinatorv1.GetRateLimitResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if _, err := s.principal(ctx); err != nil {
		return nil, err
	}
	got, err := s.c.engine.store.RateLimitGet(ctx, req.GetName())
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "no rate limit named %q", req.GetName())
		}
		return nil, toStatus(err)
	}
	return &coordinatorv1.GetRateLimitResponse{RateLimit: rateLimitProto(got)}, nil
}

// ListRateLimits lists every rate limit by name.
func (s *server) ListRateLimits(ctx context.Context, _ *coordinatorv1.ListRateLimitsRequest) (*coordinatorv1.ListRateLimitsResponse, error) {
	if _, err := s.principal(ctx); err != nil {
		return nil, err
	}
	all, err := s.c.engine.store.RateLimitList(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &coordinatorv1.ListRateLimitsResponse{RateLimits: make([]*coordinatorv1.RateLimit, 0, len(all))}
	for _, rl := range all {
		out.RateLimits = append(out.RateLimits, rateLimitProto(rl))
	}
	return out, nil
}

// DeleteRateLimit deletes a rate limit that no registered template uses.
func (s *server) DeleteRateLimit(ctx context.Context, req *coordinatorv1.DeleteRateLimitRequest) (*coordinatorv1.DeleteRateLimitResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := s.authorizeGlobal(ctx, "delete rate limits"); err != nil {
		return nil, err
	}
	users, err := s.rateLimitUsers(ctx, req.GetName(), func(template.RateLimitUse) bool { return true })
	if err != nil {
		return nil, toStatus(err)
	}
	if len(users) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "rate limit %q is used by %s; templates are immutable, so it stays while they are registered",
			req.GetName(), strings.Join(users, ", "))
	}
	if err := s.c.engine.store.RateLimitDelete(ctx, req.GetName()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "no rate limit named %q", req.GetName())
		}
		return nil, toStatus(err)
	}
	return &coordinatorv1.DeleteRateLimitResponse{}, nil
}

// authorizeGlobal lets a caller change what every namespace shares (rate
// limits) only if its token is granted every namespace; the method table
// has already checked its access class.
func (s *server) authorizeGlobal(ctx context.Context, what string) error {
	p, err := s.principal(ctx)
	if err != nil || p == nil || p.AllowsAllNamespaces() {
		return err
	}
	return status.Errorf(codes.PermissionDenied, "%s may not %s: rate limits are shared by every namespace, so it takes a token granted \"*\"", p, what)
}

// rateLimitUsers names the registered templates (ns/name@version, by
// step) with a step whose use of the named limit matches.
func (s *server) rateLimitUsers(ctx context.Context, name string, match func(template.RateLimitUse) bool) ([]string, error) {
	all, err := s.c.engine.templates.list(ctx, "")
	if err != nil {
		return nil, err
	}
	var users []string
	for _, t := range all {
		for _, st := range t.Steps {
			if slices.ContainsFunc(st.RateLimits, func(u template.RateLimitUse) bool {
				if u.Units == 0 {
					u.Units = 1
				}
				return u.Name == name && match(u)
			}) {
				users = append(users, fmt.Sprintf("%s (step %s)", templateKey(t.Namespace, t.Name, t.Version), st.Name))
			}
		}
	}
	return users, nil
}

func rateLimitProto(rl *store.RateLimit) *coordinatorv1.RateLimit {
	return &coordinatorv1.RateLimit{
		Name:      rl.Name,
		Units:     rl.Units,
		Period:    durationpb.New(rl.Period),
		Burst:     rl.Burst,
		CreatedAt: timestamp(rl.CreatedAt),
		UpdatedAt: timestamp(rl.UpdatedAt),
	}
}
