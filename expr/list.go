package expr

import (
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

// ResultsVar is the variable a list expression sees besides context: the
// results of the step's parents, by step name.
const ResultsVar = "results"

// listCostLimit bounds one evaluation of a list expression. Unlike keys,
// list expressions may use CEL's comprehensions (map, filter), whose cost
// grows with the data; the limit keeps a runaway expression from holding
// the task, and is far above what mapping a 10,000-item list costs.
const listCostLimit = 10_000_000

// ListProgram is a compiled for_each expression: CEL over context and
// results that evaluates to a list. It is immutable and safe for concurrent
// use.
type ListProgram struct {
	src string
	prg cel.Program
}

// CompileList parses and type-checks src with two dynamic variables,
// context and results. An expression whose type is known not to be a list
// is refused here.
func CompileList(src string) (*ListProgram, error) {
	switch {
	case strings.TrimSpace(src) == "":
		return nil, errors.New("empty expression; want CEL over results and context that gives a list, e.g. results.split.items")
	case len(src) > MaxSourceLen:
		return nil, fmt.Errorf("expression is %d bytes; the limit is %d", len(src), MaxSourceLen)
	}
	env, err := cel.NewEnv(cel.Variable(VarName, cel.DynType), cel.Variable(ResultsVar, cel.DynType))
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
	switch ast.OutputType().Kind() {
	case types.ListKind, types.DynKind, types.AnyKind:
	default:
		return nil, fmt.Errorf("evaluates to %s; want a list", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(listCostLimit))
	if err != nil {
		return nil, fmt.Errorf("plan CEL program: %w", err)
	}
	return &ListProgram{src: src, prg: prg}, nil
}

// Source returns the expression as written.
func (p *ListProgram) Source() string { return p.src }

// Items evaluates the program over a task's context and its parents'
// results (each a JSON document; missing or empty is null) and returns the
// list's items as JSON, in order. A value that is not a list, or an item
// that has no JSON form, is an error naming the expression.
func (p *ListProgram) Items(context json.RawMessage, results map[string]json.RawMessage) ([]json.RawMessage, error) {
	c, err := ParseContext(context)
	if err != nil {
		return nil, fmt.Errorf("for_each %s: %w", p.src, err)
	}
	res := make(map[string]any, len(results))
	for name, raw := range results {
		v, err := decodeJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("for_each %s: results of %s: %w", p.src, name, err)
		}
		res[name] = v
	}
	out, _, err := p.prg.Eval(map[string]any{VarName: c.vars[VarName], ResultsVar: res})
	if err != nil {
		return nil, fmt.Errorf("for_each %s: %w", p.src, err)
	}
	list, ok := out.(traits.Lister)
	if !ok || out.Type() != types.ListType {
		return nil, fmt.Errorf("for_each %s: evaluates to %s; want a list", p.src, describe(out))
	}
	n, ok := list.Size().(types.Int)
	if !ok {
		return nil, fmt.Errorf("for_each %s: list has no size", p.src)
	}
	items := make([]json.RawMessage, 0, int(n))
	for i := types.Int(0); i < n; i++ {
		v, err := jsonValue(list.Get(i))
		if err != nil {
			return nil, fmt.Errorf("for_each %s: item %d: %w", p.src, i, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("for_each %s: item %d: %w", p.src, i, err)
		}
		items = append(items, b)
	}
	return items, nil
}

func decodeJSON(raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return convertNumbers(v), nil
}

// describe names a CEL value's kind for an error: "null", "a map", ...
func describe(v ref.Val) string {
	if _, ok := v.(types.Null); ok {
		return "null"
	}
	return kindName(v)
}

// jsonValue turns a CEL value into what encoding/json writes as the same
// JSON: values that came from the input are already native, while lists
// and maps built by the expression are CEL's own types.
func jsonValue(v ref.Val) (any, error) {
	switch x := v.(type) {
	case types.Null:
		return nil, nil
	case types.String:
		return string(x), nil
	case types.Bool:
		return bool(x), nil
	case types.Int:
		return int64(x), nil
	case types.Uint:
		return uint64(x), nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%v has no JSON form", f)
		}
		return f, nil
	}
	switch v.Type() {
	case types.ListType:
		l := v.(traits.Lister)
		n := int(l.Size().(types.Int))
		out := make([]any, n)
		for i := range n {
			e, err := jsonValue(l.Get(types.Int(i)))
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case types.MapType:
		m := v.(traits.Mapper)
		out := map[string]any{}
		for it := m.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("map key %v is not a string", k.Value())
			}
			e, err := jsonValue(m.Get(k))
			if err != nil {
				return nil, err
			}
			out[string(ks)] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s has no JSON form", v.Type().TypeName())
}
