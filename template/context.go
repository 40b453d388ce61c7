package template

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// contextSchemaURL names the schema inside its compiler; it is never
// fetched. It is hierarchical so that a relative $ref ("other.json",
// "/etc/passwd") resolves to a URL the loader refuses, with a clear message,
// instead of silently back to the schema itself.
const contextSchemaURL = "https://tasker.invalid/context-schema.json"

// ContextSchema is a template's compiled context_schema. Compile it once per
// template version and reuse it for every task created from that version.
// The nil *ContextSchema is valid and accepts any JSON object.
type ContextSchema struct {
	schema *jsonschema.Schema
}

// refuseLoader stops a schema's $ref from reading local files or the
// network: schemas arrive over the API, so a reference is an attack surface,
// and a template must be self-contained to mean the same thing everywhere.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external $ref %q is not allowed; put the definition under $defs", url)
}

// CompileContextSchema compiles a context_schema. Empty or JSON null raw
// gives a nil schema (any object is accepted). The schema must be a JSON
// object; $ref may only point inside it. Formats ("email", "date-time", ...)
// are asserted, not just annotated, because a declared format that nobody
// checks is a trap for the handlers that trust it.
func CompileContextSchema(raw json.RawMessage) (*ContextSchema, error) {
	if len(bytes.TrimSpace(raw)) == 0 || isJSONNull(raw) {
		return nil, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, &ValidationError{Field: "context_schema", Message: "not valid JSON: " + err.Error()}
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, &ValidationError{Field: "context_schema", Message: "must be a JSON object (a JSON Schema)"}
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(refuseLoader{})
	c.AssertFormat()
	if err := c.AddResource(contextSchemaURL, doc); err != nil {
		return nil, &ValidationError{Field: "context_schema", Message: err.Error()}
	}
	sch, err := c.Compile(contextSchemaURL)
	if err != nil {
		return nil, &ValidationError{Field: "context_schema", Message: "not a valid JSON Schema: " + compileMessage(err)}
	}
	return &ContextSchema{schema: sch}, nil
}

// compileMessage flattens the compiler's error, whose meta-schema failures
// span several lines, into one line a CLI or gRPC status can carry.
func compileMessage(err error) string {
	var ve *jsonschema.ValidationError
	if se := (*jsonschema.SchemaValidationError)(nil); errors.As(err, &se) {
		// The library does not unwrap this one.
		err = se.Err
	}
	if errors.As(err, &ve) {
		if leaves := schemaLeaves(ve, nil); len(leaves) > 0 {
			_, msg := firstProblem(leaves)
			if len(leaves[0].loc) == 0 {
				return msg
			}
			return "at /" + strings.Join(leaves[0].loc, "/") + ": " + msg
		}
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Validate checks a task context: it must be a JSON object and, when the
// schema is non-nil, satisfy it. A violation is a *ValidationError whose
// Field locates the offending value ("context.order_id",
// "context.items[2].sku"); when several values are wrong the one reported
// is chosen deterministically.
func (s *ContextSchema) Validate(ctx json.RawMessage) error {
	trimmed := bytes.TrimSpace(ctx)
	if len(trimmed) == 0 {
		return &ValidationError{Field: "context", Message: "must be a JSON object, got nothing"}
	}
	if (s == nil || s.schema == nil) && trimmed[0] == '{' && json.Valid(trimmed) {
		// Without a schema, an object is all there is to check, and
		// json.Valid checks it without building it: this runs for every
		// task created.
		return nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(ctx))
	if err != nil {
		return &ValidationError{Field: "context", Message: "not valid JSON: " + err.Error()}
	}
	if _, ok := doc.(map[string]any); !ok {
		return &ValidationError{Field: "context", Message: "must be a JSON object, got " + jsonKind(doc)}
	}
	if s == nil || s.schema == nil {
		return nil
	}
	err = s.schema.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate context: %w", err)
	}
	leaves := schemaLeaves(ve, doc)
	if len(leaves) == 0 {
		return &ValidationError{Field: "context", Message: strings.Join(strings.Fields(ve.Error()), " ")}
	}
	field, msg := firstProblem(leaves)
	return &ValidationError{Field: field, Message: msg}
}

type schemaLeaf struct {
	loc   []string // instance location as JSON pointer tokens
	field string   // loc in dotted form, prefixed with "context"
	msg   string
}

// newPrinter renders the library's error kinds in English; one is built per
// call to keep the package free of mutable globals.
func newPrinter() *message.Printer { return message.NewPrinter(language.English) }

// schemaLeaves returns the innermost errors of a validation error tree (the
// ones that say what is actually wrong), sorted by location then message.
// The library builds its tree by ranging over maps, so sorting is what makes
// the first one stable. instance, if non-nil, is used to tell array indexes
// from object keys when naming the field.
func schemaLeaves(root *jsonschema.ValidationError, instance any) []schemaLeaf {
	p := newPrinter()
	var out []schemaLeaf
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		loc := slices.Clone(e.InstanceLocation)
		msg := e.ErrorKind.LocalizedString(p)
		// Point at the property itself rather than at the object that lacks
		// or carries it.
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			if len(k.Missing) > 0 {
				loc = append(loc, slices.Min(k.Missing))
				msg = "required property is missing"
			}
		case *kind.AdditionalProperties:
			if len(k.Properties) > 0 {
				loc = append(loc, slices.Min(k.Properties))
				msg = "property is not allowed by the schema"
			}
		}
		out = append(out, schemaLeaf{loc: loc, field: fieldPath(loc, instance), msg: msg})
	}
	walk(root)
	slices.SortStableFunc(out, func(a, b schemaLeaf) int {
		return cmp.Or(cmp.Compare(a.field, b.field), cmp.Compare(a.msg, b.msg))
	})
	return out
}

// firstProblem names the first location in leaves and everything wrong
// there: when a value fails an anyOf, each alternative's complaint is part
// of the answer ("got string, want array; value must be one of ...").
func firstProblem(leaves []schemaLeaf) (field, msg string) {
	field = leaves[0].field
	var msgs []string
	for _, l := range leaves {
		if l.field == field && !slices.Contains(msgs, l.msg) {
			msgs = append(msgs, l.msg)
		}
	}
	return field, strings.Join(msgs, "; ")
}

// fieldPath renders JSON pointer tokens as "context.a.b[3]", using the
// instance to know which tokens index arrays.
func fieldPath(loc []string, instance any) string {
	var sb strings.Builder
	sb.WriteString("context")
	cur := instance
	for _, tok := range loc {
		switch v := cur.(type) {
		case []any:
			sb.WriteString("[" + tok + "]")
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(v) {
				cur = v[i]
			} else {
				cur = nil
			}
		case map[string]any:
			sb.WriteString("." + tok)
			cur = v[tok]
		default:
			sb.WriteString("." + tok)
			cur = nil
		}
	}
	return sb.String()
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
}
