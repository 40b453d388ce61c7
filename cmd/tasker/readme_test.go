package main

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

// readme is the repository's README.md.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	return string(b)
}

// section is the text of the README section whose heading line is
// heading, up to the next heading of any level.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "README has no %q", heading)
	rest := doc[i+len(heading)+2:]
	if j := strings.Index(rest, "\n#"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// fenced returns the bodies of the code blocks of a language in text.
func fenced(text, lang string) []string {
	var out []string
	for {
		i := strings.Index(text, "```"+lang+"\n")
		if i < 0 {
			return out
		}
		text = text[i+len(lang)+4:]
		j := strings.Index(text, "```")
		if j < 0 {
			return out
		}
		out = append(out, text[:j])
		text = text[j+3:]
	}
}

// The README's template once marked ship skippable while the example file
// it describes did not: the README's template is the example file.
func TestReadmeTemplateIsTheExample(t *testing.T) {
	t.Parallel()
	blocks := fenced(section(t, readme(t), "## Templates"), "yaml")
	require.NotEmpty(t, blocks)
	fromReadme, err := template.Parse([]byte(blocks[0]))
	require.NoError(t, err)
	file, err := os.ReadFile("../../examples/templates/order_fulfillment.yaml")
	require.NoError(t, err)
	fromFile, err := template.Parse(file)
	require.NoError(t, err)
	require.Equal(t, fromFile, fromReadme)
}

// Running the services as separate processes once never said to register
// the templates, so the next command failed with NotFound.
func TestReadmeSeparateProcessesApplyTemplates(t *testing.T) {
	t.Parallel()
	doc := readme(t)
	i := strings.Index(doc, "To run the services as separate processes")
	require.GreaterOrEqual(t, i, 0)
	blocks := fenced(doc[i:], "sh")
	require.NotEmpty(t, blocks)
	cmds := blocks[0]
	apply := strings.Index(cmds, "tasker template apply examples/templates/")
	create := strings.Index(cmds, "tasker task create demo/order_fulfillment")
	require.GreaterOrEqual(t, apply, 0, cmds)
	require.Greater(t, create, apply, "templates are applied before a task is created:\n%s", cmds)
}

// The exit statuses in the README are those the CLI returns and lists in
// its --help.
func TestReadmeExitStatuses(t *testing.T) {
	t.Parallel()
	table := section(t, readme(t), "### Exit status")
	var documented []int
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllStringSubmatch(table, -1) {
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		documented = append(documented, n)
	}
	want := []int{exitOK, exitFailed, exitUsage, exitTaskError, exitTaskCancelled, exitTaskResolved, exitTimeout, exitInterrupted}
	require.Equal(t, want, documented)

	res := runCLI(t, "127.0.0.1:9", "--help")
	require.Equal(t, exitOK, res.code, res.stderr)
	help := res.stdout[strings.Index(res.stdout, "Exit status:"):]
	var listed []int
	for _, m := range regexp.MustCompile(`(?m)^  (\d+) `).FindAllStringSubmatch(help, -1) {
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		if !slices.Contains(listed, n) {
			listed = append(listed, n)
		}
	}
	require.Equal(t, want, listed)
}
