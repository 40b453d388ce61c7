package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinHMACKeyBytes is the shortest HMAC secret accepted; RFC 7518 asks for a
// key at least as long as the hash output of HS256.
const MinHMACKeyBytes = 32

// JWTVerifier authenticates JWTs signed with one key: an HMAC secret, or an
// RSA, ECDSA or Ed25519 public key. Accepted tokens carry the claims sub
// (the principal's name), access (read, write or executor) and namespaces
// (an array; ["*"] for all), and must carry exp; exp and nbf are enforced.
type JWTVerifier struct {
	key     any
	methods []string
	now     func() time.Time
}

// jwtClaims are the claims Tasker reads.
type jwtClaims struct {
	jwt.RegisteredClaims
	Namespaces []string `json:"namespaces"`
	Access     string   `json:"access"`
}

// LoadJWTKey reads a JWT verification key from path: a PEM public key (or
// certificate) for RSA, ECDSA or Ed25519 signatures, anything else is taken
// as an HMAC secret (a trailing newline is ignored).
func LoadJWTKey(path string) (*JWTVerifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwt key: %w", err)
	}
	v, err := NewJWTVerifier(data, time.Now)
	if err != nil {
		return nil, fmt.Errorf("jwt key %s: %w", path, err)
	}
	return v, nil
}

// NewJWTVerifier builds a verifier from key material as LoadJWTKey reads it;
// now is the clock exp and nbf are checked against (nil: time.Now).
func NewJWTVerifier(key []byte, now func() time.Time) (*JWTVerifier, error) {
	if now == nil {
		now = time.Now
	}
	v := &JWTVerifier{now: now}
	if !bytes.Contains(key, []byte("-----BEGIN")) {
		secret := bytes.TrimRight(key, "\r\n")
		if len(secret) < MinHMACKeyBytes {
			return nil, fmt.Errorf("HMAC secret is %d bytes; use at least %d", len(secret), MinHMACKeyBytes)
		}
		v.key, v.methods = secret, []string{"HS256", "HS384", "HS512"}
		return v, nil
	}
	pub, err := parsePublicKeyPEM(key)
	if err != nil {
		return nil, err
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		v.methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			v.methods = []string{"ES256"}
		case elliptic.P384():
			v.methods = []string{"ES384"}
		case elliptic.P521():
			v.methods = []string{"ES512"}
		default:
			return nil, fmt.Errorf("ECDSA curve %s has no JWT algorithm", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		v.methods = []string{"EdDSA"}
	default:
		return nil, fmt.Errorf("public key type %T is not supported; want RSA, ECDSA or Ed25519", pub)
	}
	v.key = pub
	return v, nil
}

// parsePublicKeyPEM returns the public key of the first PEM block that holds
// one, refusing private keys so a secret is never configured by mistake.
func parsePublicKeyPEM(data []byte) (any, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PUBLIC KEY or CERTIFICATE block in PEM")
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse public key: %w", err)
			}
			return k, nil
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse RSA public key: %w", err)
			}
			return k, nil
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			return c.PublicKey, nil
		}
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, errors.New("PEM holds a private key; give the public key (the coordinator only verifies)")
		}
	}
}

// Authenticate implements Authenticator. Tokens that are not JWTs at all
// are ErrUnknownToken, so a Chain moves on to the next authenticator.
func (v *JWTVerifier) Authenticate(_ context.Context, token string) (*Principal, error) {
	if strings.Count(token, ".") != 2 {
		return nil, ErrUnknownToken
	}
	var c jwtClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil },
		jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired(), jwt.WithTimeFunc(v.now))
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, ErrUnknownToken
	case err != nil:
		return nil, unauthenticatedf("jwt: %w", err)
	}
	access, err := ParseAccess(c.Access)
	if err != nil {
		return nil, unauthenticatedf("jwt claim %w", err)
	}
	p := &Principal{Name: c.Subject, Namespaces: c.Namespaces, Access: access}
	if err := p.validate(); err != nil {
		if p.Name == "" {
			err = errors.New("sub claim is empty")
		}
		return nil, unauthenticatedf("jwt claims: %w", err)
	}
	return p, nil
}
