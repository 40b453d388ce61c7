package template

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// ParseError says where and why a template document could not be read:
// bad YAML or JSON, an unknown field, or a value of the wrong type. It
// speaks the document's language (its field names and list indexes, its
// lines), not Go's.
type ParseError struct {
	// Line is the 1-based line of the problem in the document; 0 when it
	// is not known.
	Line int
	// Field is the path of the offending field as the document writes it,
	// "steps[2].retry_limit"; empty for the document as a whole.
	Field string
	// Message says what is wrong.
	Message string
}

// Error reads "parse template: line 12: steps[2].retry_limit: want a whole
// number, got a string".
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("parse template: line %d: %s", e.Line, e.Detail())
	}
	return "parse template: " + e.Detail()
}

// Detail is the error without its prefix or line, "steps[2].retry_limit:
// ...", for callers that print "FILE:LINE: " before it.
func (e *ParseError) Detail() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// yamlLine finds the line in the YAML library's error text ("yaml: line 3:
// mapping values are not allowed", "line 2: key "name" already set").
var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// yamlError turns an error from converting YAML to JSON into a ParseError,
// with the line when the text gives one.
func yamlError(err error) *ParseError {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ParseError{Line: line, Message: m[2]}
	}
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	return &ParseError{Message: strings.TrimPrefix(msg, "yaml: ")}
}

// locate finds the first field of a document that cannot be decoded into a
// Template and says where it is. js is the document as the decoder saw it
// (src converted to JSON), so values are judged exactly as decoding judged
// them; src is parsed again only for the lines and the order of keys. It
// returns nil if it finds nothing, and the caller falls back to the
// decoder's own message.
func locate(src, js []byte) *ParseError {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil
	}
	var root yamlv3.Node
	var node *yamlv3.Node
	if yamlv3.Unmarshal(src, &root) == nil && len(root.Content) > 0 {
		node = root.Content[0]
	}
	if _, ok := doc.(map[string]any); !ok && doc != nil {
		return at(node, "", "the document is "+kindOf(doc)+"; want a mapping with namespace, name, version and steps")
	}
	return check(reflect.TypeFor[Template](), doc, node, "")
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// check judges v, found at node and path, as a value of type t the way
// encoding/json would, and returns the first problem.
func check(t reflect.Type, v any, node *yamlv3.Node, path string) *ParseError {
	node = unalias(node)
	if v == nil || t == rawMessageType {
		// null leaves a field as it is; raw JSON takes anything and is
		// judged by Validate.
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil
		}
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			return at(node, path, err.Error())
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return check(t.Elem(), v, node, path)
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return at(node, path, "want a mapping, got "+kindOf(v))
		}
		for _, key := range keyOrder(obj, node) {
			fieldPath := key
			if path != "" {
				fieldPath = path + "." + key
			}
			f, ok := jsonField(t, key)
			if !ok {
				return at(mapKey(node, key), fieldPath, unknownField(t, key))
			}
			if err := check(f.Type, obj[key], mapValue(node, key), fieldPath); err != nil {
				return err
			}
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			return at(node, path, "want a list, got "+kindOf(v))
		}
		for i, item := range list {
			if err := check(t.Elem(), item, listItem(node, i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.String:
		switch v.(type) {
		case string:
		case bool:
			return at(node, path, "got a bool where a string belongs (YAML reads on/off/yes/no/y/n as booleans): quote it")
		case json.Number:
			return at(node, path, "got a number where a string belongs: quote it")
		default:
			return at(node, path, "want a string, got "+kindOf(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return at(node, path, "want a whole number, got "+kindOf(v))
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			return at(node, path, fmt.Sprintf("want a whole number, got %s", n))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return at(node, path, "want a number, got "+kindOf(v))
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			return at(node, path, fmt.Sprintf("want a number, got %s", n))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return at(node, path, "want true or false, got "+kindOf(v))
		}
	}
	return nil
}

func at(node *yamlv3.Node, field, msg string) *ParseError {
	e := &ParseError{Field: field, Message: msg}
	if node != nil {
		e.Line = node.Line
	}
	return e
}

// kindOf names a decoded JSON value's kind in YAML's words.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a bool"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// jsonField finds the field of struct t that encoding/json decodes key
// into: the exact name first, then one equal under case folding.
func jsonField(t reflect.Type, key string) (reflect.StructField, bool) {
	var folded reflect.StructField
	found := false
	for _, f := range reflect.VisibleFields(t) {
		name := jsonName(f)
		if name == "" {
			continue
		}
		if name == key {
			return f, true
		}
		if !found && strings.EqualFold(name, key) {
			folded, found = f, true
		}
	}
	return folded, found
}

// jsonName is the name a field has in JSON; "" for fields JSON skips.
func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return f.Name
	}
	return name
}

// unknownField says a key is not a field of t, suggesting the nearest
// field names or listing them all.
func unknownField(t reflect.Type, key string) string {
	var names, near []string
	for _, f := range reflect.VisibleFields(t) {
		if name := jsonName(f); name != "" {
			names = append(names, name)
			if editDistance(strings.ToLower(key), name) <= 2 {
				near = append(near, name)
			}
		}
	}
	if len(near) > 0 {
		return `unknown field; did you mean "` + strings.Join(near, `" or "`) + `"?`
	}
	return "unknown field; want one of " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func unalias(n *yamlv3.Node) *yamlv3.Node {
	for n != nil && n.Kind == yamlv3.AliasNode {
		n = n.Alias
	}
	return n
}

// keyOrder lists obj's keys in the order the document writes them, so the
// first problem reported is the first in the document; keys the YAML node
// does not show (merged in with <<) come last, sorted.
func keyOrder(obj map[string]any, node *yamlv3.Node) []string {
	keys := make([]string, 0, len(obj))
	seen := make(map[string]bool, len(obj))
	if node != nil && node.Kind == yamlv3.MappingNode {
		for i := 0; i+1 < len(node.Content); i += 2 {
			k := node.Content[i].Value
			if _, ok := obj[k]; ok && !seen[k] {
				keys, seen[k] = append(keys, k), true
			}
		}
	}
	var rest []string
	for k := range obj {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(keys, rest...)
}

// mapKey is the node of key in a mapping node; the mapping itself when the
// key is not written there.
func mapKey(node *yamlv3.Node, key string) *yamlv3.Node {
	if node != nil && node.Kind == yamlv3.MappingNode {
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == key {
				return node.Content[i]
			}
		}
	}
	return node
}

// mapValue is the node of key's value in a mapping node, or the mapping.
func mapValue(node *yamlv3.Node, key string) *yamlv3.Node {
	if node != nil && node.Kind == yamlv3.MappingNode {
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == key {
				return node.Content[i+1]
			}
		}
	}
	return node
}

// listItem is the node of a sequence's i-th item, or the sequence.
func listItem(node *yamlv3.Node, i int) *yamlv3.Node {
	if node != nil && node.Kind == yamlv3.SequenceNode && i < len(node.Content) {
		return node.Content[i]
	}
	return node
}
