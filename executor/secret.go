package executor

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tasker-go/tasker/auth"
	executorv1 "github.com/tasker-go/tasker/gen/tasker/executor/v1"
)

// MinSecretLength is the shortest Config.Secret accepted; shorter ones are
// guessable.
const MinSecretLength = 16

// secretGuard refuses calls to the executor service that do not carry the
// shared secret. Health checks and reflection stay open: probes hold no
// secret, and the API they describe is public.
type secretGuard struct {
	// digest is the SHA-256 of the secret: comparing digests takes the same
	// time whatever the length or content of what a caller sent.
	digest [sha256.Size]byte
	// guarded is the prefix of every method the secret guards.
	guarded string
}

func newSecretGuard(secret string) *secretGuard {
	return &secretGuard{
		digest:  sha256.Sum256([]byte(secret)),
		guarded: "/" + executorv1.ExecutorService_ServiceDesc.ServiceName + "/",
	}
}

func (g *secretGuard) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := g.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := g.check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

func (g *secretGuard) check(ctx context.Context, method string) error {
	if !strings.HasPrefix(method, g.guarded) {
		return nil
	}
	token, err := auth.TokenFromContext(ctx)
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "executor secret required: %v", err)
	}
	got := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], g.digest[:]) != 1 {
		return status.Error(codes.Unauthenticated, "wrong executor secret")
	}
	return nil
}
