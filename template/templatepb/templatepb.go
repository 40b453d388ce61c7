// Package templatepb converts templates between their file form
// (template.Template) and their API message (coordinatorv1.TaskTemplate), so
// the CLI, the coordinator and tests share one conversion.
package templatepb

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/template"
)

// ToProto converts a template to its API form. Unset optional fields stay
// unset so the coordinator applies its defaults.
func ToProto(t *template.Template) (*coordinatorv1.TaskTemplate, error) {
	schema, err := rawToStruct(t.ContextSchema)
	if err != nil {
		return nil, fmt.Errorf("context_schema: %w", err)
	}
	out := &coordinatorv1.TaskTemplate{
		Namespace:     t.Namespace,
		Name:          t.Name,
		Version:       t.Version,
		Description:   t.Description,
		ContextSchema: schema,
		Priority:      int32(t.Priority),
		Identity:      t.Identity,
		Steps:         make([]*coordinatorv1.StepTemplate, 0, len(t.Steps)),
	}
	if out.Concurrency, err = concurrencyToProto(t.Concurrency); err != nil {
		return nil, err
	}
	for i := range t.Steps {
		s := &t.Steps[i]
		config, err := rawToStruct(s.Config)
		if err != nil {
			return nil, fmt.Errorf("step %q: config: %w", s.Name, err)
		}
		ps := &coordinatorv1.StepTemplate{
			Name:      s.Name,
			Handler:   s.Handler,
			DependsOn: s.DependsOn,
			Config:    config,
			Skippable: s.Skippable,
			Timeout:   optionalDuration(s.Timeout),
			Sleep:     optionalDuration(s.Sleep),
			Decision:  s.Decision,
			ForEach:   s.ForEach,
			// Child tasks.
			Task:        s.Task,
			TaskContext: s.TaskContext,
		}
		if w := s.WaitFor; w != nil {
			ps.WaitFor = &coordinatorv1.WaitFor{Signal: w.Signal, Timeout: optionalDuration(w.Timeout)}
		}
		if ps.Concurrency, err = concurrencyToProto(s.Concurrency); err != nil {
			return nil, fmt.Errorf("step %q: %w", s.Name, err)
		}
		for j, u := range s.RateLimits {
			pu := &coordinatorv1.RateLimitUse{Name: u.Name, Key: u.Key}
			if u.Units != 0 {
				if u.Units < 0 || u.Units > math.MaxInt32 {
					return nil, fmt.Errorf("step %q: rate_limits[%d].units %d out of range", s.Name, j, u.Units)
				}
				pu.Units = new(int32(u.Units))
			}
			ps.RateLimits = append(ps.RateLimits, pu)
		}
		if s.Retryable != nil {
			ps.Retryable = new(*s.Retryable)
		}
		if s.RetryLimit != 0 {
			if s.RetryLimit < 0 || s.RetryLimit > math.MaxInt32 {
				return nil, fmt.Errorf("step %q: retry_limit %d out of range", s.Name, s.RetryLimit)
			}
			ps.RetryLimit = new(int32(s.RetryLimit))
		}
		if s.Backoff != (template.Backoff{}) {
			ps.Backoff = &coordinatorv1.Backoff{
				Initial:    optionalDuration(s.Backoff.Initial),
				Multiplier: s.Backoff.Multiplier,
				Max:        optionalDuration(s.Backoff.Max),
			}
		}
		out.Steps = append(out.Steps, ps)
	}
	return out, nil
}

// FromProto converts a template from the API back to the file form, so
// `template get -o json` output can be applied again.
func FromProto(p *coordinatorv1.TaskTemplate) (*template.Template, error) {
	schema, err := structToRaw(p.GetContextSchema())
	if err != nil {
		return nil, fmt.Errorf("context_schema: %w", err)
	}
	t := &template.Template{
		Namespace:     p.GetNamespace(),
		Name:          p.GetName(),
		Version:       p.GetVersion(),
		Description:   p.GetDescription(),
		ContextSchema: schema,
		Priority:      int(p.GetPriority()),
		Identity:      p.GetIdentity(),
		Concurrency:   concurrencyFromProto(p.GetConcurrency()),
		Steps:         make([]template.Step, 0, len(p.GetSteps())),
	}
	for _, ps := range p.GetSteps() {
		config, err := structToRaw(ps.GetConfig())
		if err != nil {
			return nil, fmt.Errorf("step %q: config: %w", ps.GetName(), err)
		}
		s := template.Step{
			Name:      ps.GetName(),
			Handler:   ps.GetHandler(),
			DependsOn: ps.GetDependsOn(),
			Config:    config,
			Skippable: ps.GetSkippable(),
			Timeout:   template.Duration(ps.GetTimeout().AsDuration()),
			Sleep:     template.Duration(ps.GetSleep().AsDuration()),
			Decision:  ps.GetDecision(),
			ForEach:   ps.GetForEach(),

			Concurrency: concurrencyFromProto(ps.GetConcurrency()),
			// Child tasks.
			Task:        ps.GetTask(),
			TaskContext: ps.GetTaskContext(),
		}
		if w := ps.GetWaitFor(); w != nil {
			s.WaitFor = &template.WaitFor{Signal: w.GetSignal(), Timeout: template.Duration(w.GetTimeout().AsDuration())}
		}
		for j, pu := range ps.GetRateLimits() {
			u := template.RateLimitUse{Name: pu.GetName(), Key: pu.GetKey()}
			if pu.Units != nil {
				if pu.GetUnits() < 1 {
					return nil, fmt.Errorf("step %q: rate_limits[%d].units must be at least 1, got %d", ps.GetName(), j, pu.GetUnits())
				}
				u.Units = int(pu.GetUnits())
			}
			s.RateLimits = append(s.RateLimits, u)
		}
		if ps.Retryable != nil {
			s.Retryable = new(ps.GetRetryable())
		}
		if ps.RetryLimit != nil {
			if ps.GetRetryLimit() < 1 {
				return nil, fmt.Errorf("step %q: retry_limit must be at least 1, got %d", ps.GetName(), ps.GetRetryLimit())
			}
			s.RetryLimit = int(ps.GetRetryLimit())
		}
		if b := ps.GetBackoff(); b != nil {
			s.Backoff = template.Backoff{
				Initial:    template.Duration(b.GetInitial().AsDuration()),
				Multiplier: b.GetMultiplier(),
				Max:        template.Duration(b.GetMax().AsDuration()),
			}
		}
		t.Steps = append(t.Steps, s)
	}
	return t, nil
}

func concurrencyToProto(cs []template.Concurrency) ([]*coordinatorv1.Concurrency, error) {
	var out []*coordinatorv1.Concurrency
	for i, c := range cs {
		if c.MaxRunning < math.MinInt32 || c.MaxRunning > math.MaxInt32 {
			return nil, fmt.Errorf("concurrency[%d].max_running %d out of range", i, c.MaxRunning)
		}
		out = append(out, &coordinatorv1.Concurrency{Key: c.Key, MaxRunning: int32(c.MaxRunning), Strategy: c.Strategy})
	}
	return out, nil
}

func concurrencyFromProto(pcs []*coordinatorv1.Concurrency) []template.Concurrency {
	var out []template.Concurrency
	for _, pc := range pcs {
		out = append(out, template.Concurrency{Key: pc.GetKey(), MaxRunning: int(pc.GetMaxRunning()), Strategy: pc.GetStrategy()})
	}
	return out
}

func optionalDuration(d template.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(time.Duration(d))
}

// rawToStruct converts a JSON object to a Struct; empty or null is nil.
func rawToStruct(raw json.RawMessage) (*structpb.Struct, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a JSON object, got %s", JSONKind(v))
	}
	return structpb.NewStruct(obj)
}

// structToRaw is the inverse of rawToStruct.
func structToRaw(s *structpb.Struct) (json.RawMessage, error) {
	if s == nil {
		return nil, nil
	}
	b, err := json.Marshal(s.AsMap())
	if err != nil {
		return nil, fmt.Errorf("encode struct: %w", err)
	}
	return b, nil
}

// JSONKind names the kind of a decoded JSON value for error messages, with
// its article ("an array").
func JSONKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	default:
		return "an object"
	}
}
