package auth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/tasker-go/tasker/auth"
)

func TestAccessAllows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		have, need auth.Access
		want       bool
	}{
		{auth.AccessRead, auth.AccessRead, true},
		{auth.AccessRead, auth.AccessWrite, false},
		{auth.AccessRead, auth.AccessExecutor, false},
		{auth.AccessWrite, auth.AccessRead, true},
		{auth.AccessWrite, auth.AccessWrite, true},
		{auth.AccessWrite, auth.AccessExecutor, false},
		{auth.AccessExecutor, auth.AccessExecutor, true},
		{auth.AccessExecutor, auth.AccessRead, false},
		{auth.AccessExecutor, auth.AccessWrite, false},
		{auth.AccessNone, auth.AccessRead, false},
	} {
		require.Equal(t, tc.want, tc.have.Allows(tc.need), "%s allows %s", tc.have, tc.need)
	}
}

func TestParseAccess(t *testing.T) {
	t.Parallel()
	for _, a := range []auth.Access{auth.AccessRead, auth.AccessWrite, auth.AccessExecutor} {
		got, err := auth.ParseAccess(a.String())
		require.NoError(t, err)
		require.Equal(t, a, got)
	}
	_, err := auth.ParseAccess("admin")
	require.ErrorContains(t, err, `access "admin": want read, write or executor`)
}

func TestPrincipalChecksNameWhatIsMissing(t *testing.T) {
	t.Parallel()
	p := &auth.Principal{Name: "team-a", Namespaces: []string{"a", "shared"}, Access: auth.AccessRead}
	require.NoError(t, p.CheckNamespace("a"))
	require.NoError(t, p.CheckNamespace("shared"))
	err := p.CheckNamespace("b")
	require.ErrorIs(t, err, auth.ErrPermissionDenied)
	require.ErrorContains(t, err, `token "team-a" is not granted namespace "b" (granted: a, shared)`)

	err = p.CheckAccess(auth.AccessWrite, "CreateTask")
	require.ErrorIs(t, err, auth.ErrPermissionDenied)
	require.ErrorContains(t, err, `token "team-a" has read access; CreateTask needs write access`)

	all := &auth.Principal{Name: "ops", Namespaces: []string{auth.AllNamespaces}, Access: auth.AccessWrite}
	require.True(t, all.AllowsAllNamespaces())
	require.NoError(t, all.CheckNamespace("anything"))
}

func TestPrincipalContext(t *testing.T) {
	t.Parallel()
	_, ok := auth.FromContext(context.Background())
	require.False(t, ok)
	p := &auth.Principal{Name: "x"}
	got, ok := auth.FromContext(auth.NewContext(context.Background(), p))
	require.True(t, ok)
	require.Same(t, p, got)
}

func TestTokenFromContext(t *testing.T) {
	t.Parallel()
	in := func(vals ...string) context.Context {
		md := metadata.MD{}
		for _, v := range vals {
			md.Append("authorization", v)
		}
		return metadata.NewIncomingContext(context.Background(), md)
	}
	tok, err := auth.TokenFromContext(in("Bearer abc"))
	require.NoError(t, err)
	require.Equal(t, "abc", tok)
	tok, err = auth.TokenFromContext(in("bearer   abc "))
	require.NoError(t, err)
	require.Equal(t, "abc", tok)

	for name, ctx := range map[string]context.Context{
		"none":        context.Background(),
		"empty md":    in(),
		"basic":       in("Basic dXNlcjpwYXNz"),
		"no token":    in("Bearer "),
		"bare token":  in("abc"),
		"two headers": in("Bearer a", "Bearer b"),
	} {
		_, err := auth.TokenFromContext(ctx)
		require.ErrorIs(t, err, auth.ErrUnauthenticated, name)
	}
}

// fixed is an Authenticator with canned answers, for Chain.
type fixed struct {
	p   *auth.Principal
	err error
}

func (f fixed) Authenticate(context.Context, string) (*auth.Principal, error) { return f.p, f.err }

func TestChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := &auth.Principal{Name: "alice"}
	expired := errors.Join(auth.ErrUnauthenticated, errors.New("expired"))

	p, err := auth.Chain{fixed{err: auth.ErrUnknownToken}, fixed{p: alice}}.Authenticate(ctx, "t")
	require.NoError(t, err)
	require.Same(t, alice, p)

	_, err = auth.Chain{fixed{err: expired}, fixed{p: alice}}.Authenticate(ctx, "t")
	require.ErrorIs(t, err, expired, "a definite rejection is not overridden by a later authenticator")

	_, err = auth.Chain{fixed{err: auth.ErrUnknownToken}}.Authenticate(ctx, "t")
	require.ErrorIs(t, err, auth.ErrUnknownToken)
	_, err = auth.Chain{}.Authenticate(ctx, "t")
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
}
