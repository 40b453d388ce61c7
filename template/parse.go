package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"slices"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Parse reads a template from YAML or JSON (JSON is read as YAML, which it
// nearly always is). Decoding is strict: an unknown field or a repeated key
// is an error naming it, because a misspelt "depends_on" silently ignored
// would run steps in the wrong order. Parse neither fills in defaults nor
// validates; call Normalize and Validate for that.
//
// Errors are *ParseError, naming the field as the document writes it
// ("steps[2].retry_limit") and, when it can be found, its line.
func Parse(data []byte) (*Template, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ParseError{Message: "empty input"}
	}
	// YAML is turned into JSON first, without looking at the target types:
	// YAML 1.1 reads `on`, `no` or `y` as booleans, and decoding them into a
	// string field must fail loudly rather than name a handler "true".
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, yamlError(err)
	}
	// The conversion reads the first YAML document only: a second one
	// (after "---") would be dropped without a word.
	if pe := secondDocument(data); pe != nil {
		return nil, pe
	}
	var t *Template
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		// encoding/json names Go types and dotted paths without list
		// indexes or lines; find the problem again in the document's terms.
		if pe := locate(data, js); pe != nil {
			return nil, pe
		}
		return nil, &ParseError{Message: err.Error()}
	}
	if t == nil {
		return nil, &ParseError{Message: "the document is null; want a mapping with namespace, name, version and steps"}
	}
	return t, nil
}

// ParseAll reads every template in data: one per YAML document, the
// documents separated by "---" lines as in a Kubernetes manifest (a JSON
// document is one template). Each is read as Parse reads one; an error's
// line is counted from the start of data. Documents with nothing but
// comments are skipped; data without any template is an error.
func ParseAll(data []byte) ([]*Template, error) {
	var out []*Template
	for _, d := range splitDocuments(data) {
		t, err := Parse(d.text)
		if err != nil {
			var pe *ParseError
			if errors.As(err, &pe) && pe.Line > 0 {
				pe.Line += d.line - 1
			}
			return nil, err
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, &ParseError{Message: "empty input"}
	}
	return out, nil
}

// document is one YAML document's text and the line of data it starts on.
type document struct {
	text []byte
	line int
}

// splitDocuments splits data at YAML's document markers, which stand at
// the start of a line and so cannot occur inside any value: a "---" line
// (which may carry the document's first content after it) starts a
// document, a "..." line ends one. Documents holding only blank lines,
// comments and markers are left out.
func splitDocuments(data []byte) []document {
	lines := bytes.SplitAfter(data, []byte("\n"))
	var (
		out   []document
		start = 0
	)
	flush := func(end int) {
		if !blankDocument(lines[start:end]) {
			out = append(out, document{text: bytes.Join(lines[start:end], nil), line: start + 1})
		}
	}
	for i, l := range lines {
		switch {
		case isMarker(l, "---") && i > start:
			flush(i)
			start = i
		case isEndMarker(l):
			flush(i)
			start = i + 1
		}
	}
	if start < len(lines) {
		flush(len(lines))
	}
	return out
}

// isMarker reports whether line is the document marker m, alone or
// followed by whitespace.
func isMarker(line []byte, m string) bool {
	rest, ok := bytes.CutPrefix(line, []byte(m))
	return ok && (len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r')
}

// isEndMarker reports whether line is YAML's document end marker: "..."
// with nothing after it but whitespace and a comment. Unlike "---", it
// carries no content; "... 00" is no marker to the YAML readers, so
// splitting there made ParseAll read a second document out of what Parse
// reads as one (found by FuzzParse).
func isEndMarker(line []byte) bool {
	if !isMarker(line, "...") {
		return false
	}
	rest := bytes.TrimSpace(line[3:])
	return len(rest) == 0 || rest[0] == '#'
}

// blankDocument reports whether lines hold nothing but blank lines,
// comments and bare markers.
func blankDocument(lines [][]byte) bool {
	for _, l := range lines {
		t := bytes.TrimSpace(l)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		if isMarker(l, "---") || isMarker(l, "...") {
			rest := bytes.TrimSpace(l[3:])
			if len(rest) == 0 || rest[0] == '#' {
				continue
			}
		}
		return false
	}
	return true
}

// secondDocument finds what follows the first YAML document of data: a
// second document with content, or one YAML cannot read, is returned as a
// ParseError at its line; nil if there is none. An empty document, as a
// trailing "---" leaves, holds nothing to lose.
func secondDocument(data []byte) *ParseError {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var doc yamlv3.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if i == 0 {
				// The conversion of the first document already reported
				// or forgave it.
				return nil
			}
			return yamlError(err)
		}
		if i == 0 || len(doc.Content) == 0 {
			continue
		}
		n := doc.Content[0]
		if n.Kind == yamlv3.ScalarNode && n.Tag == "!!null" {
			continue
		}
		return &ParseError{Line: n.Line, Message: "a second YAML document (after ---): Parse reads one template; ParseAll reads each document as one"}
	}
}

// Normalize fills in the defaults the design gives (retryable true,
// retry_limit 3, backoff 2s×2 up to 30s) so that everything downstream reads
// explicit values and two templates that differ only in spelled-out defaults
// get the same Digest. It is idempotent.
//
// A zero Backoff.Max becomes DefaultBackoffMax, or Initial when Initial is
// larger, so that setting only a long initial delay is not an error. A JSON
// null config or context_schema is the same as none.
func (t *Template) Normalize() {
	if isJSONNull(t.ContextSchema) {
		t.ContextSchema = nil
	}
	normalizeConcurrency(t.Concurrency)
	if t.Identity == IdentityStrict {
		// The default is stored as "", so templates written before
		// identity strategies keep their digest.
		t.Identity = ""
	}
	for i := range t.Steps {
		s := &t.Steps[i]
		normalizeConcurrency(s.Concurrency)
		for j := range s.RateLimits {
			if s.RateLimits[j].Units == 0 {
				s.RateLimits[j].Units = 1
			}
		}
		if s.Retryable == nil {
			yes := true
			s.Retryable = &yes
		}
		if s.RetryLimit == 0 {
			s.RetryLimit = DefaultRetryLimit
		}
		if s.Backoff.Initial == 0 {
			s.Backoff.Initial = Duration(DefaultBackoffInitial)
		}
		if s.Backoff.Multiplier == 0 {
			s.Backoff.Multiplier = DefaultBackoffMultiplier
		}
		if s.Backoff.Max == 0 {
			s.Backoff.Max = max(Duration(DefaultBackoffMax), s.Backoff.Initial)
		}
		if isJSONNull(s.Config) {
			s.Config = nil
		}
	}
}

func normalizeConcurrency(cs []Concurrency) {
	for i := range cs {
		if cs[i].Strategy == "" {
			cs[i].Strategy = StrategyQueue
		}
	}
}

// normalizedCopy returns a normalized copy of t that shares no mutable
// memory with it, so Validate and Digest never change their argument.
func normalizedCopy(t *Template) *Template {
	c := *t
	c.Steps = slices.Clone(t.Steps)
	c.Concurrency = slices.Clone(t.Concurrency)
	for i := range c.Steps {
		c.Steps[i].DependsOn = slices.Clone(c.Steps[i].DependsOn)
		c.Steps[i].Concurrency = slices.Clone(c.Steps[i].Concurrency)
		c.Steps[i].RateLimits = slices.Clone(c.Steps[i].RateLimits)
		if r := c.Steps[i].Retryable; r != nil {
			v := *r
			c.Steps[i].Retryable = &v
		}
		c.Steps[i].TaskContext = maps.Clone(c.Steps[i].TaskContext)
		if w := c.Steps[i].WaitFor; w != nil {
			v := *w
			c.Steps[i].WaitFor = &v
		}
	}
	c.Normalize()
	return &c
}

func isJSONNull(raw []byte) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}
