package auth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/auth"
)

func sha(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func TestTokensFileYAMLAndJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	yamlFile := `
- name: ci
  token: ci-secret-0123456789
  namespaces: [billing, demo]
  access: write
- name: dashboards
  token_sha256: ` + sha("dashboards-secret-0123") + `
  namespaces: ["*"]
  access: read
- name: executors
  token: executor-secret-0123456789
  access: executor
`
	jsonFile := `[{"name":"ci","token":"ci-secret-0123456789","namespaces":["billing","demo"],"access":"write"},
{"name":"dashboards","token_sha256":"` + sha("dashboards-secret-0123") + `","namespaces":["*"],"access":"read"},
{"name":"executors","token":"executor-secret-0123456789","access":"executor"}]`
	for name, body := range map[string]string{"tokens.yaml": yamlFile, "tokens.json": jsonFile} {
		path := filepath.Join(t.TempDir(), name)
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		toks, err := auth.LoadTokens(path)
		require.NoError(t, err, name)
		require.Equal(t, 3, toks.Len())

		p, err := toks.Authenticate(ctx, "ci-secret-0123456789")
		require.NoError(t, err)
		require.Equal(t, &auth.Principal{Name: "ci", Namespaces: []string{"billing", "demo"}, Access: auth.AccessWrite}, p)

		p, err = toks.Authenticate(ctx, "dashboards-secret-0123")
		require.NoError(t, err, "hashed entries match the secret")
		require.Equal(t, "dashboards", p.Name)
		require.True(t, p.AllowsAllNamespaces())

		p, err = toks.Authenticate(ctx, "executor-secret-0123456789")
		require.NoError(t, err)
		require.Equal(t, auth.AccessExecutor, p.Access)

		_, err = toks.Authenticate(ctx, "ci-secret-012345678")
		require.ErrorIs(t, err, auth.ErrUnknownToken)
		_, err = toks.Authenticate(ctx, sha("dashboards-secret-0123"))
		require.ErrorIs(t, err, auth.ErrUnknownToken, "the hash itself is not a token")
	}
}

func TestTokensFileRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, want string
	}{
		{`[]`, "no tokens"},
		{`{name: x}`, "want a list"},
		{`- {name: a, token: 0123456789abcdef, namespaces: [x], access: write, admin: true}`, "unknown field"},
		{`- {name: a, token: 0123456789abcdef, namespaces: [x], access: admin}`, `entry 1 ("a"): access "admin"`},
		{`- {name: a, token: 0123456789abcdef, access: read}`, "read access needs namespaces"},
		{`- {name: a, token: 0123456789abcdef, namespaces: [""], access: read}`, "empty name"},
		{`- {name: a, token: short, namespaces: [x], access: read}`, "token is 5 characters; use at least 16"},
		{`- {name: a, namespaces: [x], access: read}`, "token or token_sha256 is required"},
		{`- {name: a, token: 0123456789abcdef, token_sha256: ` + sha("0123456789abcdef") + `, namespaces: [x], access: read}`, "not both"},
		{`- {name: a, token_sha256: abc, namespaces: [x], access: read}`, "64 hex digits"},
		{`- {token: 0123456789abcdef, namespaces: [x], access: read}`, "name is empty"},
		{"- {name: a, token: 0123456789abcdef, namespaces: [x], access: read}\n- {name: a, token: fedcba9876543210, namespaces: [x], access: read}", `name "a" is used twice`},
		{"- {name: a, token: 0123456789abcdef, namespaces: [x], access: read}\n- {name: b, token_sha256: " + sha("0123456789abcdef") + ", namespaces: [x], access: read}", `same token as "a"`},
	} {
		_, err := auth.ParseTokens([]byte(tc.body))
		require.ErrorContains(t, err, tc.want, tc.body)
	}
	_, err := auth.LoadTokens(filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
