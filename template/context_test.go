package template_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/template"
)

const orderSchema = `{
  "type": "object",
  "required": ["order_id", "customer"],
  "additionalProperties": false,
  "properties": {
    "order_id": {"type": "string", "minLength": 2},
    "customer": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
    "items": {"type": "array", "items": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}}},
    "priority": {"anyOf": [{"type": "integer"}, {"enum": ["low", "high"]}]}
  }
}`

func TestCompileContextSchemaEmpty(t *testing.T) {
	t.Parallel()
	for _, raw := range []json.RawMessage{nil, {}, json.RawMessage(" "), json.RawMessage("null")} {
		s, err := template.CompileContextSchema(raw)
		require.NoError(t, err)
		require.Nil(t, s)
	}
}

func TestCompileContextSchemaErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ raw, want string }{
		{`{`, "context_schema: not valid JSON"},
		{`[]`, "context_schema: must be a JSON object (a JSON Schema)"},
		{`true`, "context_schema: must be a JSON object (a JSON Schema)"},
		{`{"type":"objekt"}`, "context_schema: not a valid JSON Schema: at /type: "},
		{`{"properties":{"a":{"minimum":"x"}}}`, "context_schema: not a valid JSON Schema: at /properties/a/minimum: got string, want number"},
		{`{"pattern":"("}`, "context_schema: not a valid JSON Schema: at /pattern: "},
		{`{"$ref":"/etc/passwd"}`, `external $ref "https://tasker.invalid/etc/passwd" is not allowed`},
		{`{"$ref":"file:///etc/passwd"}`, `external $ref "file:///etc/passwd" is not allowed`},
		{`{"$ref":"other.json"}`, `external $ref "https://tasker.invalid/other.json" is not allowed`},
		{`{"$id":"http://example.com/s.json","$ref":"defs.json"}`, `external $ref "http://example.com/defs.json" is not allowed`},
		{`{"$ref":"#/$defs/missing"}`, "context_schema: not a valid JSON Schema"},
	}
	for _, tc := range cases {
		s, err := template.CompileContextSchema(json.RawMessage(tc.raw))
		require.ErrorContains(t, err, tc.want, "schema %s", tc.raw)
		require.Nil(t, s)
		var ve *template.ValidationError
		require.True(t, errors.As(err, &ve))
		require.Equal(t, "context_schema", ve.Field)
	}
}

func TestContextSchemaValidate(t *testing.T) {
	t.Parallel()
	s, err := template.CompileContextSchema(json.RawMessage(orderSchema))
	require.NoError(t, err)
	require.NotNil(t, s)

	cases := []struct {
		name, ctx    string
		field, msg   string // empty field: valid
		msgSubstring bool
	}{
		{name: "valid minimal", ctx: `{"order_id":"A1","customer":{}}`},
		{name: "valid full", ctx: `{"order_id":"A1","customer":{"email":"a@b.example"},"items":[{"sku":"x"}],"priority":"high"}`},
		{name: "valid integer priority", ctx: `{"order_id":"A1","customer":{},"priority":3}`},

		{name: "missing required", ctx: `{"customer":{}}`, field: "context.order_id", msg: "required property is missing"},
		{name: "two missing, first by name", ctx: `{}`, field: "context.customer", msg: "required property is missing"},
		{name: "wrong type", ctx: `{"order_id":7,"customer":{}}`, field: "context.order_id", msg: "got number, want string"},
		{name: "too short", ctx: `{"order_id":"A","customer":{}}`, field: "context.order_id", msg: "minLength", msgSubstring: true},
		{name: "unknown property", ctx: `{"order_id":"A1","customer":{},"colour":"red"}`, field: "context.colour", msg: "property is not allowed by the schema"},
		{name: "nested format", ctx: `{"order_id":"A1","customer":{"email":"nope"}}`, field: "context.customer.email", msg: "not valid email", msgSubstring: true},
		{name: "array element", ctx: `{"order_id":"A1","customer":{},"items":[{"sku":"x"},{"sku":5}]}`, field: "context.items[1].sku", msg: "got number, want string"},
		{name: "array element missing key", ctx: `{"order_id":"A1","customer":{},"items":[{}]}`, field: "context.items[0].sku", msg: "required property is missing"},
		{name: "anyOf reports every alternative", ctx: `{"order_id":"A1","customer":{},"priority":"urgent"}`, field: "context.priority",
			msg: "got string, want integer; value must be one of 'low', 'high'"},
		{name: "first location wins", ctx: `{"order_id":7,"customer":{"email":"nope"}}`, field: "context.customer.email", msg: "not valid email", msgSubstring: true},

		{name: "array context", ctx: `[]`, field: "context", msg: "must be a JSON object, got an array"},
		{name: "string context", ctx: `"x"`, field: "context", msg: "must be a JSON object, got a string"},
		{name: "null context", ctx: `null`, field: "context", msg: "must be a JSON object, got null"},
		{name: "empty context", ctx: ``, field: "context", msg: "must be a JSON object, got nothing"},
		{name: "broken JSON", ctx: `{"order_id":`, field: "context", msg: "not valid JSON", msgSubstring: true},
		{name: "trailing data", ctx: `{"order_id":"A1","customer":{}} {}`, field: "context", msg: "not valid JSON", msgSubstring: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := s.Validate(json.RawMessage(tc.ctx))
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var ve *template.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, tc.field, ve.Field)
			require.Empty(t, ve.Step)
			if tc.msgSubstring {
				require.Contains(t, ve.Message, tc.msg)
			} else {
				require.Equal(t, tc.msg, ve.Message)
			}
			require.Equal(t, ve.Field+": "+ve.Message, err.Error())
		})
	}
}

func TestContextSchemaNilAcceptsAnyObject(t *testing.T) {
	t.Parallel()
	var s *template.ContextSchema
	require.NoError(t, s.Validate(json.RawMessage(`{}`)))
	require.NoError(t, s.Validate(json.RawMessage(`{"anything":[1,{"x":null}]}`)))
	require.EqualError(t, s.Validate(json.RawMessage(`[1]`)), "context: must be a JSON object, got an array")
	require.EqualError(t, s.Validate(json.RawMessage(`42`)), "context: must be a JSON object, got a number")
	require.EqualError(t, s.Validate(nil), "context: must be a JSON object, got nothing")
	require.NoError(t, s.Validate(json.RawMessage(" \n{\"a\": 1} ")))
	// Not JSON, though it starts as an object: refused as before, by the
	// decoder's account of it.
	err := s.Validate(json.RawMessage(`{"a":`))
	require.ErrorContains(t, err, "context: not valid JSON")
	require.Error(t, s.Validate(json.RawMessage(`{"a":1}{"b":2}`)))
}

func TestContextSchemaFromExampleTemplate(t *testing.T) {
	t.Parallel()
	tpl := mustParse(t, orderFulfillment)
	s, err := template.CompileContextSchema(tpl.ContextSchema)
	require.NoError(t, err)
	require.NoError(t, s.Validate(json.RawMessage(`{"order_id":"o-1"}`)))
	require.EqualError(t, s.Validate(json.RawMessage(`{}`)), "context.order_id: required property is missing")
}

func TestContextSchemaConcurrentUse(t *testing.T) {
	t.Parallel()
	// One compiled schema serves every task of a template version at once.
	s, err := template.CompileContextSchema(json.RawMessage(orderSchema))
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			ctx := fmt.Sprintf(`{"order_id":"A%d","customer":{}}`, i)
			if i%2 == 1 {
				ctx = fmt.Sprintf(`{"order_id":%d,"customer":{}}`, i)
			}
			errs[i] = s.Validate(json.RawMessage(ctx))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 {
			require.NoError(t, err)
		} else {
			require.EqualError(t, err, "context.order_id: got number, want string")
		}
	}
}

func TestContextSchemaLocalRefs(t *testing.T) {
	t.Parallel()
	s, err := template.CompileContextSchema(json.RawMessage(
		`{"$defs":{"id":{"type":"string"}},"type":"object","properties":{"order_id":{"$ref":"#/$defs/id"}}}`))
	require.NoError(t, err)
	require.NoError(t, s.Validate(json.RawMessage(`{"order_id":"x"}`)))
	require.EqualError(t, s.Validate(json.RawMessage(`{"order_id":1}`)), "context.order_id: got number, want string")
}
