package conformance

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// The kit's case ids and rules are the documents': docs/conformance.md has
// a section per case, the protocol page links every case, and every rule
// the kit prints is a section of the protocol page.
func TestDocsNameEveryCase(t *testing.T) {
	t.Parallel()
	confDoc, err := os.ReadFile("../docs/conformance.md")
	require.NoError(t, err)
	protoDoc, err := os.ReadFile("../docs/executor-protocol.md")
	require.NoError(t, err)

	var documented []string
	for _, m := range regexp.MustCompile("(?m)^### `([a-z-]+)`$").FindAllStringSubmatch(string(confDoc), -1) {
		if !strings.HasPrefix(m[1], "conformance") {
			documented = append(documented, m[1])
		}
	}
	require.Equal(t, CaseIDs(), documented, "docs/conformance.md sections")

	var anchors []string
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(protoDoc), -1) {
		anchors = append(anchors, githubAnchor(m[1]))
	}
	for _, c := range cases {
		require.Contains(t, string(protoDoc), "(conformance.md#"+c.id+")", "executor-protocol.md links case %s", c.id)
		anchor := strings.TrimPrefix(c.rule, protocolDoc)
		require.True(t, slices.Contains(anchors, anchor), "case %s: rule %s is no heading of executor-protocol.md (%v)", c.id, c.rule, anchors)
	}
}
