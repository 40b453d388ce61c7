package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/auth"
	"github.com/tasker-go/tasker/auth/authtest"
)

// clock is the fixed time the verifiers in these tests run on.
func clock() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func claims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "ci", "namespaces": []string{"demo"}, "access": "write", "exp": clock().Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestJWTHMAC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	secret := []byte("0123456789abcdef0123456789abcdef")
	path := filepath.Join(t.TempDir(), "jwt.key")
	require.NoError(t, os.WriteFile(path, append(secret, '\n'), 0o600))
	loaded, err := auth.LoadJWTKey(path)
	require.NoError(t, err)
	_, err = loaded.Authenticate(ctx, sign(t, jwt.SigningMethodHS256, secret, claims(jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})))
	require.NoError(t, err, "the trailing newline of the key file is not part of the secret")

	v, err := auth.NewJWTVerifier(secret, clock)
	require.NoError(t, err)
	p, err := v.Authenticate(ctx, sign(t, jwt.SigningMethodHS256, secret, claims(nil)))
	require.NoError(t, err)
	require.Equal(t, &auth.Principal{Name: "ci", Namespaces: []string{"demo"}, Access: auth.AccessWrite}, p)
	p, err = v.Authenticate(ctx, sign(t, jwt.SigningMethodHS512, secret, claims(jwt.MapClaims{"access": "executor", "namespaces": nil})))
	require.NoError(t, err)
	require.Equal(t, auth.AccessExecutor, p.Access)

	for _, tc := range []struct {
		name, token, want string
	}{
		{"expired", sign(t, jwt.SigningMethodHS256, secret, claims(jwt.MapClaims{"exp": clock().Add(-time.Second).Unix()})), "token is expired"},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, secret, claims(jwt.MapClaims{"nbf": clock().Add(time.Minute).Unix()})), "not valid yet"},
		{"no exp", sign(t, jwt.SigningMethodHS256, secret, claims(jwt.MapClaims{"exp": nil})), "exp"},
		{"other secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims(nil)), "signature is invalid"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), "signing method none is invalid"},
		{"no sub", sign(t, jwt.SigningMethodHS256, secret, claims(jwt.MapClaims{"sub": nil})), "sub claim is empty"},
		{"bad access", sign(t, jwt.SigningMethodHS256, secret, claims(jwt.MapClaims{"access": "root"})), `access "root"`},
		{"no namespaces", sign(t, jwt.SigningMethodHS256, secret, claims(jwt.MapClaims{"namespaces": nil})), "write access needs namespaces"},
	} {
		_, err := v.Authenticate(ctx, tc.token)
		require.ErrorIs(t, err, auth.ErrUnauthenticated, tc.name)
		require.NotErrorIs(t, err, auth.ErrUnknownToken, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	for _, tok := range []string{"opaque-static-token", "a.b.c", ""} {
		_, err := v.Authenticate(ctx, tok)
		require.ErrorIs(t, err, auth.ErrUnknownToken, "%q is not a JWT, so a chain may try other authenticators", tok)
	}
}

func TestJWTPublicKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	edDER, err := x509.MarshalPKIXPublicKey(edPub)
	require.NoError(t, err)

	for _, tc := range []struct {
		name   string
		pem    []byte
		method jwt.SigningMethod
		key    any
	}{
		{"ecdsa", pemBlock("PUBLIC KEY", ecDER), jwt.SigningMethodES256, ecKey},
		{"rsa pkcs1", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), jwt.SigningMethodRS256, rsaKey},
		{"rsa pss", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), jwt.SigningMethodPS256, rsaKey},
		{"ed25519", pemBlock("PUBLIC KEY", edDER), jwt.SigningMethodEdDSA, edPriv},
	} {
		v, err := auth.NewJWTVerifier(tc.pem, clock)
		require.NoError(t, err, tc.name)
		p, err := v.Authenticate(ctx, sign(t, tc.method, tc.key, claims(nil)))
		require.NoError(t, err, tc.name)
		require.Equal(t, "ci", p.Name)
	}

	// A token signed with HMAC using the public key as the secret must not
	// pass an asymmetric verifier (algorithm confusion).
	v, err := auth.NewJWTVerifier(pemBlock("PUBLIC KEY", ecDER), clock)
	require.NoError(t, err)
	_, err = v.Authenticate(ctx, sign(t, jwt.SigningMethodHS256, pemBlock("PUBLIC KEY", ecDER), claims(nil)))
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
	require.ErrorContains(t, err, "signing method HS256 is invalid")

	// A certificate works as the key holder too.
	ca := authtest.NewCA(t, "jwt-ca")
	v, err = auth.NewJWTVerifier(ca.PEM, clock)
	require.NoError(t, err)
	_, err = v.Authenticate(ctx, sign(t, jwt.SigningMethodES256, ecKey, claims(nil)))
	require.ErrorContains(t, err, "signature is invalid", "signed by a key that is not the certificate's")
}

func TestJWTKeyRejects(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	privDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		key  []byte
		want string
	}{
		{"short secret", []byte("too-short\n"), "HMAC secret is 9 bytes; use at least 32"},
		{"private key", pemBlock("PRIVATE KEY", privDER), "give the public key"},
		{"no key block", pemBlock("NOTHING", []byte("x")), "no PUBLIC KEY or CERTIFICATE block"},
		{"bad der", pemBlock("PUBLIC KEY", []byte("x")), "parse public key"},
	} {
		_, err := auth.NewJWTVerifier(tc.key, clock)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	_, err = auth.LoadJWTKey(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestChainTokensThenJWT(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	toks, err := auth.ParseTokens([]byte(`[{name: static, token: static-token-0123456789, namespaces: [a], access: read}]`))
	require.NoError(t, err)
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := auth.NewJWTVerifier(secret, clock)
	require.NoError(t, err)
	chain := auth.Chain{toks, v}

	p, err := chain.Authenticate(ctx, "static-token-0123456789")
	require.NoError(t, err)
	require.Equal(t, "static", p.Name)
	p, err = chain.Authenticate(ctx, sign(t, jwt.SigningMethodHS256, secret, claims(nil)))
	require.NoError(t, err)
	require.Equal(t, "ci", p.Name)
	_, err = chain.Authenticate(ctx, sign(t, jwt.SigningMethodHS256, secret, claims(jwt.MapClaims{"exp": clock().Add(-time.Hour).Unix()})))
	require.ErrorContains(t, err, "expired", "the JWT's own reason, not just 'not recognised'")
	_, err = chain.Authenticate(ctx, "nobody-issued-this-token")
	require.ErrorIs(t, err, auth.ErrUnknownToken)
}
