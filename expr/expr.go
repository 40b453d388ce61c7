// Package expr compiles and evaluates key expressions: small CEL programs
// over a task's context ("context.customer_id",
// `context.region + "/" + context.account`) whose value names a
// concurrency key or a rate-limit bucket. It is pure: no I/O, no clock.
package expr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// VarName is the one variable an expression sees: the task's context
// object.
const VarName = "context"

// MaxSourceLen bounds an expression's text. Keys are meant to be a field
// path or a short concatenation; a longer expression is almost certainly a
// mistake, and the bound keeps compile and evaluation cost small.
const MaxSourceLen = 1024

// Program is a compiled key expression. It is immutable and safe for
// concurrent use.
type Program struct {
	src string
	prg cel.Program
}

// Compile parses and type-checks src with one dynamic variable, context.
// Errors are one line: the position and CEL's message. An expression whose
// type is known to be a list, a map, null or another non-scalar is refused
// here, since it could never produce a key.
func Compile(src string) (*Program, error) {
	switch {
	case strings.TrimSpace(src) == "":
		return nil, errors.New("empty expression; want CEL over the task context, e.g. context.customer_id")
	case len(src) > MaxSourceLen:
		return nil, fmt.Errorf("expression is %d bytes; the limit is %d", len(src), MaxSourceLen)
	}
	// Only has() of CEL's macros: the comprehensions (all, exists, map,
	// filter) are what could make one evaluation cost more than a pass over
	// the expression, and a key never needs them. Without them the cost is
	// bounded by MaxSourceLen and the context's size, so no per-evaluation
	// cost tracking (which tripled evaluation time) is needed.
	env, err := cel.NewEnv(cel.Variable(VarName, cel.DynType), cel.ClearMacros(), cel.Macros(cel.HasMacro))
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	ast, iss := env.Compile(src)
	if iss != nil && len(iss.Errors()) > 0 {
		e := iss.Errors()[0]
		msg := fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message)
		if n := len(iss.Errors()); n > 1 {
			msg += fmt.Sprintf(" (and %d more)", n-1)
		}
		return nil, errors.New(msg)
	}
	if !scalarOrDyn(ast.OutputType()) {
		return nil, fmt.Errorf("evaluates to %s; want a string, number or bool", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("plan CEL program: %w", err)
	}
	return &Program{src: src, prg: prg}, nil
}

func scalarOrDyn(t *cel.Type) bool {
	switch t.Kind() {
	case types.StringKind, types.IntKind, types.UintKind, types.DoubleKind, types.BoolKind, types.DynKind, types.AnyKind:
		return true
	}
	return false
}

// Source returns the expression as written.
func (p *Program) Source() string { return p.src }

// Key evaluates the program over a task context (a JSON object; empty or
// null is an empty object) and returns its value as a canonical string.
// See KeyFrom.
func (p *Program) Key(context json.RawMessage) (string, error) {
	c, err := ParseContext(context)
	if err != nil {
		return "", fmt.Errorf("key %s: %w", p.src, err)
	}
	return p.KeyFrom(c)
}

// Context is a task context decoded once for evaluation, so several
// programs over the same task do not decode it again. It is read-only and
// safe for concurrent use.
type Context struct {
	vars map[string]any
}

// ParseContext decodes a task context. JSON numbers written without a
// fraction or exponent that fit int64 (or uint64) become CEL ints (uints),
// so large identifiers keep every digit; others become doubles.
func ParseContext(raw json.RawMessage) (*Context, error) {
	var obj map[string]any
	if t := bytes.TrimSpace(raw); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf("decode context: %w", err)
		}
	}
	if obj == nil {
		obj = map[string]any{}
	}
	return &Context{vars: map[string]any{VarName: convertNumbers(obj)}}, nil
}

// convertNumbers replaces json.Number values in place with int64, uint64
// or float64, the types CEL's native adapter knows.
func convertNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = convertNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = convertNumbers(e)
		}
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return u
			}
		}
		f, _ := x.Float64() // the decoder accepted it, so it is a valid number; out of range is ±Inf
		return f
	}
	return v
}

// KeyFrom evaluates the program over a decoded context. Strings are
// returned as they are; ints and uints in decimal; bools as "true" or
// "false"; doubles in the shortest form that reads back the same, with an
// integral double such as 42.0 written "42" (JSON does not tell 42 from
// 42.0, so neither may the key). A null, a missing field, a list, a map or
// any other value is an error naming the expression.
func (p *Program) KeyFrom(c *Context) (string, error) {
	out, _, err := p.prg.Eval(c.vars)
	if err != nil {
		return "", fmt.Errorf("key %s: %w", p.src, err)
	}
	return p.canonical(out)
}

func (p *Program) canonical(v ref.Val) (string, error) {
	switch x := v.(type) {
	case types.String:
		return string(x), nil
	case types.Int:
		return strconv.FormatInt(int64(x), 10), nil
	case types.Uint:
		return strconv.FormatUint(uint64(x), 10), nil
	case types.Bool:
		return strconv.FormatBool(bool(x)), nil
	case types.Double:
		f := float64(x)
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0):
			return "", fmt.Errorf("key %s: evaluates to %v; want a finite number", p.src, f)
		case f == math.Trunc(f) && math.Abs(f) < 1<<53:
			return strconv.FormatInt(int64(f), 10), nil
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	case types.Null:
		return "", fmt.Errorf("key %s: evaluates to null; want a string, number or bool", p.src)
	}
	return "", fmt.Errorf("key %s: evaluates to %s; want a string, number or bool", p.src, kindName(v))
}

func kindName(v ref.Val) string {
	switch v.Type() {
	case types.ListType:
		return "a list"
	case types.MapType:
		return "a map"
	}
	return "a " + v.Type().TypeName()
}
