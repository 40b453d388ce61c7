package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// MinTokenLength is the shortest plain token a tokens file may hold; shorter
// ones are guessable. Hashed entries cannot be checked and are trusted.
const MinTokenLength = 16

// TokenEntry is one entry of a tokens file, a YAML or JSON list:
//
//	# tokens.yaml
//	- name: ci
//	  token_sha256: 3f1c…          # or token: <the secret itself>
//	  namespaces: [billing, demo]  # or ["*"]; not needed for executor
//	  access: write                # read, write or executor
type TokenEntry struct {
	// Token is the secret in the clear; convenient for development.
	Token string `json:"token,omitempty"`
	// TokenSHA256 is the hex SHA-256 of the secret, so the file does not
	// hold the secret itself.
	TokenSHA256 string `json:"token_sha256,omitempty"`
	// Name identifies the holder in logs and error messages.
	Name string `json:"name"`
	// Namespaces granted; ["*"] grants all.
	Namespaces []string `json:"namespaces,omitempty"`
	// Access is read, write or executor.
	Access string `json:"access"`
}

// Tokens authenticates the static tokens of a tokens file. Lookups go by the
// token's SHA-256, so the secrets themselves need not stay in memory.
type Tokens struct {
	byDigest map[[sha256.Size]byte]*Principal
}

// LoadTokens reads a tokens file (see TokenEntry).
func LoadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	t, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens reads the YAML or JSON list of a tokens file. It rejects
// unknown fields, duplicate names or tokens, and entries without what they
// need, naming the entry.
func ParseTokens(data []byte) (*Tokens, error) {
	var entries []TokenEntry
	if err := yaml.UnmarshalStrict(data, &entries); err != nil {
		return nil, fmt.Errorf("want a list of {name, token or token_sha256, namespaces, access} (quote tokens that look like numbers or booleans): %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("no tokens")
	}
	t := &Tokens{byDigest: make(map[[sha256.Size]byte]*Principal, len(entries))}
	names := map[string]bool{}
	for i, e := range entries {
		p, digest, err := e.principal()
		if err != nil {
			return nil, fmt.Errorf("entry %d (%q): %w", i+1, e.Name, err)
		}
		if names[p.Name] {
			return nil, fmt.Errorf("entry %d: name %q is used twice", i+1, p.Name)
		}
		names[p.Name] = true
		if prev, ok := t.byDigest[digest]; ok {
			return nil, fmt.Errorf("entry %d (%q): same token as %q", i+1, p.Name, prev.Name)
		}
		t.byDigest[digest] = p
	}
	return t, nil
}

func (e TokenEntry) principal() (*Principal, [sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	access, err := ParseAccess(e.Access)
	if err != nil {
		return nil, digest, err
	}
	p := &Principal{Name: e.Name, Namespaces: e.Namespaces, Access: access}
	if err := p.validate(); err != nil {
		return nil, digest, err
	}
	switch {
	case e.Token != "" && e.TokenSHA256 != "":
		return nil, digest, errors.New("give token or token_sha256, not both")
	case e.Token != "":
		if len(e.Token) < MinTokenLength {
			return nil, digest, fmt.Errorf("token is %d characters; use at least %d", len(e.Token), MinTokenLength)
		}
		digest = sha256.Sum256([]byte(e.Token))
	case e.TokenSHA256 != "":
		b, err := hex.DecodeString(strings.TrimSpace(e.TokenSHA256))
		if err != nil || len(b) != sha256.Size {
			return nil, digest, errors.New("token_sha256 must be 64 hex digits")
		}
		copy(digest[:], b)
	default:
		return nil, digest, errors.New("token or token_sha256 is required")
	}
	return p, digest, nil
}

// Authenticate implements Authenticator.
func (t *Tokens) Authenticate(_ context.Context, token string) (*Principal, error) {
	if p, ok := t.byDigest[sha256.Sum256([]byte(token))]; ok {
		return p, nil
	}
	return nil, ErrUnknownToken
}

// Len is the number of tokens loaded, for startup logs.
func (t *Tokens) Len() int { return len(t.byDigest) }
