package expr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// ResultsVar is the second variable a value expression sees: the results
// of the step's parents, by step name.
const ResultsVar = "results"

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
		var v any
		if t := bytes.TrimSpace(raw); len(t) > 0 {
			dec := json.NewDecoder(bytes.NewReader(t))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				return nil, fmt.Errorf("decode results of %s: %w", name, err)
			}
		}
		rs[name] = convertNumbers(v)
	}
	return &Inputs{vars: map[string]any{VarName: c.vars[VarName], ResultsVar: rs}}, nil
}

// Eval evaluates the program and returns its value as JSON. Ints and
// uints keep every digit; a double that is not finite, or a value JSON
// cannot hold (a type, a timestamp, bytes), is an error naming the
// expression, as is a missing field.
func (p *ValueProgram) Eval(in *Inputs) (json.RawMessage, error) {
	out, _, err := p.prg.Eval(in.vars)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.src, err)
	}
	v, err := toJSON(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.src, err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.src, err)
	}
	return raw, nil
}

// toJSON turns a CEL value into what encoding/json writes as the same
// JSON value; ints are json.Numbers so none is rounded through a double.
func toJSON(v ref.Val) (any, error) {
	switch x := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(x), nil
	case types.String:
		return string(x), nil
	case types.Int:
		return json.Number(fmt.Sprint(int64(x))), nil
	case types.Uint:
		return json.Number(fmt.Sprint(uint64(x))), nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("evaluates to %v; JSON has no such number", f)
		}
		return f, nil
	case traits.Lister:
		n, ok := x.Size().(types.Int)
		if !ok {
			return nil, errors.New("a list of unknown size")
		}
		out := make([]any, 0, int(n))
		for i := types.Int(0); i < n; i++ {
			e, err := toJSON(x.Get(i))
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	case traits.Mapper:
		out := map[string]any{}
		it := x.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("a map key %v is not a string; JSON objects have string keys", k)
			}
			e, err := toJSON(x.Get(k))
			if err != nil {
				return nil, err
			}
			out[string(ks)] = e
		}
		return out, nil
	case *types.Err:
		return nil, x
	}
	return nil, fmt.Errorf("evaluates to %s, which JSON cannot hold", kindName(v))
}
