package expr

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// ResultsNamed lists the step names an expression reads from results, as
// results.NAME or results["NAME"], sorted and each once, so a template can
// refuse one that names a step whose results the step will not have. A
// name computed at run time (results[context.step]) is not listed.
func ResultsNamed(src string) ([]string, error) {
	env, err := cel.NewEnv(cel.Variable(VarName, cel.DynType), cel.Variable(ResultsVar, cel.DynType))
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	parsed, iss := env.Parse(src)
	if iss != nil && len(iss.Errors()) > 0 {
		return nil, errors.New(iss.Errors()[0].Message)
	}
	isResults := func(e celast.Expr) bool {
		return e.Kind() == celast.IdentKind && e.AsIdent() == ResultsVar
	}
	var names []string
	celast.PreOrderVisit(parsed.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.SelectKind:
			if sel := e.AsSelect(); isResults(sel.Operand()) {
				names = append(names, sel.FieldName())
			}
		case celast.CallKind:
			call := e.AsCall()
			if call.FunctionName() != operators.Index || len(call.Args()) != 2 || !isResults(call.Args()[0]) {
				return
			}
			if key := call.Args()[1]; key.Kind() == celast.LiteralKind {
				if s, ok := key.AsLiteral().(types.String); ok {
					names = append(names, string(s))
				}
			}
		}
	}))
	slices.Sort(names)
	return slices.Compact(names), nil
}
