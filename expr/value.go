package expr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
)

// ValueProgram is a compiled value expression: CEL over a task's context
// and its step's parents' results ("results.quote.total",
// "context.customer"), whose value may be any JSON value, not only a
// scalar. A child task's context is built from such expressions. It is
// immutable and safe for concurrent use.
type ValueProgram struct {
	src string
	prg cel.Program
}

// CompileValue parses and type-checks src with two dynamic variables,
// context and results. Errors are one line, as Compile's. The same macros
// are left out as for keys, for the same reason: one evaluation never
// costs more than a pass over the expression and its inputs.
func CompileValue(src string) (*ValueProgram, error) {
	switch {
	case strings.TrimSpace(src) == "":
		return nil, errors.New("empty expression; want CEL over context and results, e.g. results.quote.total")
	case len(src) > MaxSourceLen:
		return nil, fmt.Errorf("expression is %d bytes; the limit is %d", len(src), MaxSourceLen)
	}
	env, err := cel.NewEnv(cel.Variable(VarName, cel.DynType), cel.Variable(ResultsVar, cel.DynType),
		cel.ClearMacros(), cel.Macros(cel.HasMacro))
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
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("plan CEL program: %w", err)
	}
	return &ValueProgram{src: src, prg: prg}, nil
}

// Source returns the expression as written.
func (p *ValueProgram) Source() string { return p.src }

// Inputs are what a value expression is evaluated over, decoded once for
// all the expressions of one step.
type Inputs struct {
	vars map[string]any
}

// ParseInputs decodes a task context (a JSON object; empty or null is an
// empty object) and parents' results by step name (a missing or empty
// result reads as null). Numbers are read as ParseContext reads them.
func ParseInputs(context json.RawMessage, results map[string]json.RawMessage) (*Inputs, error) {
	c, err := ParseContext(context)
	if err != nil {
		return nil, err
	}
	rs := make(map[string]any, len(results))
	for name, raw := range results {
		v, err := decodeJSON(bytes.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("decode results of %s: %w", name, err)
		}
		rs[name] = v
	}
	return &Inputs{vars: map[string]any{VarName: c.vars[VarName], ResultsVar: rs}}, nil
}

// Eval evaluates the program and returns its value as JSON. Ints and
// uints keep every digit; a double that is not finite, or a value with no
// JSON form (a type, a timestamp, bytes), is an error naming the
// expression, as is a missing field.
func (p *ValueProgram) Eval(in *Inputs) (json.RawMessage, error) {
	out, _, err := p.prg.Eval(in.vars)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.src, err)
	}
	v, err := jsonValue(out) // list.go: the conversion for_each items use
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.src, err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.src, err)
	}
	return raw, nil
}
