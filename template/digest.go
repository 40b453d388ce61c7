package template

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
)

// Digest is the hex SHA-256 of t's canonical JSON after Normalize, so that
// registering the same content twice (in YAML or JSON, keys in any order,
// defaults spelt out or not) is recognised as the same template, and
// different content under an existing version is caught. t is not changed.
// It returns "" only for a template that cannot be encoded as JSON (a NaN
// backoff multiplier), which Validate refuses anyway.
func Digest(t *Template) string {
	c := normalizedCopy(t)
	// Raw fields that are not valid JSON (Validate refuses them) are hashed
	// as strings, so they cannot make the encoding fail.
	c.ContextSchema = validJSONOrString(c.ContextSchema)
	for i := range c.Steps {
		c.Steps[i].Config = validJSONOrString(c.Steps[i].Config)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	canon, err := canonicalJSON(raw)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}

// Identity is Tasker's "hash" identity strategy: a task created without an
// idempotency key is identified by its template coordinates and its
// context, so a repeated request finds the existing task. The context is
// canonicalised first, so key order and whitespace do not matter; numbers
// keep their literal spelling (1 and 1.0 differ) rather than risk two
// different large numbers colliding. Context that is not valid JSON is
// hashed as given.
func Identity(namespace, name, version string, ctx json.RawMessage) string {
	coords, _ := json.Marshal([]string{namespace, name, version}) // strings always encode
	canon, err := canonicalJSON(ctx)
	if err != nil {
		canon = ctx
	}
	h := sha256.New()
	h.Write([]byte("tasker.identity.v1\n"))
	h.Write(coords)
	h.Write([]byte("\n"))
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil))
}

// canonicalJSON re-encodes a JSON value with object keys sorted (the
// encoding of map[string]any), no insignificant whitespace, and string
// escapes normalised. Numbers are kept as written. Empty input is null.
func canonicalJSON(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return []byte("null"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func validJSONOrString(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || json.Valid(raw) {
		return raw
	}
	s, _ := json.Marshal(string(raw)) // strings always encode
	return s
}
