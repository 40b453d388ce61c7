package coordinator

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/state/statepb"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// protoState is the API enum of s; the mapping lives in statepb.
func protoState(s state.State) coordinatorv1.State { return statepb.ToProto(s) }

// stateFromProto maps a requested state; STATE_UNSPECIFIED is valid and
// gives "" (any state), while a value this build does not know is not.
func stateFromProto(p coordinatorv1.State) (state.State, bool) {
	if p == coordinatorv1.State_STATE_UNSPECIFIED {
		return "", true
	}
	return statepb.FromProto(p)
}

// jsonStruct decodes a JSON object into a Struct; nil or null gives nil.
func jsonStruct(raw json.RawMessage) *structpb.Struct {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, s); err != nil {
		return nil
	}
	return s
}

func jsonValue(raw json.RawMessage) *structpb.Value {
	if len(raw) == 0 {
		return nil
	}
	v := &structpb.Value{}
	if err := protojson.Unmarshal(raw, v); err != nil {
		return nil
	}
	return v
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// metadataCache converts transition metadata to Structs once per distinct
// value: metadata repeats (the same few executor ids) while every watched
// transition needs it, and decoding JSON into a Struct is costly. The
// cached Structs are shared and must not be modified.
type metadataCache struct {
	mu sync.Mutex // protects m
	m  map[string]*structpb.Struct
}

// maxCachedMetadata bounds the cache; past it values are decoded each time.
const maxCachedMetadata = 4096

func newMetadataCache() *metadataCache { return &metadataCache{m: map[string]*structpb.Struct{}} }

func (c *metadataCache) get(raw json.RawMessage) *structpb.Struct {
	if len(raw) == 0 || c == nil {
		return jsonStruct(raw)
	}
	c.mu.Lock()
	s, ok := c.m[string(raw)]
	c.mu.Unlock()
	if ok {
		return s
	}
	s = jsonStruct(raw)
	c.mu.Lock()
	if len(c.m) < maxCachedMetadata {
		c.m[string(raw)] = s
	}
	c.mu.Unlock()
	return s
}

func transitionToProto(t *store.Transition, meta *metadataCache) *coordinatorv1.Transition {
	return &coordinatorv1.Transition{
		Seq: t.Seq, TaskId: t.TaskID, StepName: t.StepName, FromState: protoState(t.From),
		ToState: protoState(t.To), At: timestamp(t.At), Reason: t.Reason, Attempt: int32(t.Attempt),
		Metadata: meta.get(t.Metadata), LeaseToken: t.LeaseToken,
	}
}

// taskToProto converts a task; steps and transitions are included when
// given.
func taskToProto(t *store.Task, steps []*store.Step, transitions []*store.Transition, meta *metadataCache) *coordinatorv1.Task {
	return taskWithContextToProto(t, jsonStruct(t.Context), steps, transitions, meta)
}

// taskWithContextToProto is taskToProto with the task's context already
// decoded.
func taskWithContextToProto(t *store.Task, context *structpb.Struct, steps []*store.Step, transitions []*store.Transition, meta *metadataCache) *coordinatorv1.Task {
	p := &coordinatorv1.Task{
		Id: t.ID, Namespace: t.Namespace, Name: t.Name, Version: t.Version, State: protoState(t.State),
		Context: context, IdempotencyKey: t.IdentityKey, CreatedAt: timestamp(t.CreatedAt),
		UpdatedAt: timestamp(t.UpdatedAt), CompletedAt: timestamp(t.CompletedAt), RunAt: timestamp(t.RunAt),
		Priority: int32(cmp.Or(t.Priority, template.DefaultPriority)), DebounceKey: t.DebounceKey,
		ParentTaskId: t.ParentTaskID, ParentStepId: t.ParentStepID,
	}
	byStep := map[string][]*coordinatorv1.Transition{}
	for _, tr := range transitions {
		if tr.StepID == "" {
			p.Transitions = append(p.Transitions, transitionToProto(tr, meta))
			continue
		}
		byStep[tr.StepID] = append(byStep[tr.StepID], transitionToProto(tr, meta))
	}
	for _, s := range steps {
		ps := &coordinatorv1.Step{
			Id: s.ID, Name: s.Name, Handler: s.Handler, DependsOn: s.DependsOn, State: protoState(s.State),
			Attempts: int32(s.Attempts), MaxAttempts: int32(s.MaxAttempts), Retryable: s.Retryable,
			Skippable: s.Skippable, Results: jsonValue(s.Results), NextRetryAt: timestamp(s.NextRetryAt),
			Transitions: byStep[s.ID],
		}
		if s.Error != nil {
			ps.Error = &coordinatorv1.StepError{Message: s.Error.Message, ErrorClass: s.Error.Class, Retryable: s.Error.Retryable}
		}
		if of, k, ok := template.ParseInstanceName(s.Name); ok {
			ps.InstanceOf, ps.Index = of, int32(k)
		}
		p.Steps = append(p.Steps, ps)
	}
	return p
}

// contextJSON encodes a task context; a missing context is an empty object.
func contextJSON(s *structpb.Struct) (json.RawMessage, error) {
	if s == nil {
		return json.RawMessage("{}"), nil
	}
	if err := checkFinite("context", structpb.NewStructValue(s)); err != nil {
		return nil, err
	}
	// encoding/json, not protojson, whose spacing is deliberately unstable:
	// stored JSON should read the same every time.
	raw, err := json.Marshal(s.AsMap())
	if err != nil {
		return nil, fmt.Errorf("context: %w", err)
	}
	return raw, nil
}

// valueJSON encodes a JSON value given as a protobuf Value (a manual
// resolution's results), refusing what JSON cannot hold; path names it in
// errors.
func valueJSON(path string, v *structpb.Value) (json.RawMessage, error) {
	if err := checkFinite(path, v); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(v.AsInterface())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return raw, nil
}

// checkFinite refuses NaN and infinities anywhere in v, naming where: JSON
// has no such numbers, and structpb would turn them into the strings "NaN"
// and "Infinity", storing something the caller never sent.
func checkFinite(path string, v *structpb.Value) error {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		if math.IsNaN(k.NumberValue) || math.IsInf(k.NumberValue, 0) {
			return fmt.Errorf("%s: %v is not a JSON number (NaN and infinities cannot be stored)", path, k.NumberValue)
		}
	case *structpb.Value_StructValue:
		for _, key := range slices.Sorted(maps.Keys(k.StructValue.GetFields())) {
			if err := checkFinite(path+"."+key, k.StructValue.GetFields()[key]); err != nil {
				return err
			}
		}
	case *structpb.Value_ListValue:
		for i, item := range k.ListValue.GetValues() {
			if err := checkFinite(fmt.Sprintf("%s[%d]", path, i), item); err != nil {
				return err
			}
		}
	}
	return nil
}
