package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/tasker-go/tasker/expr"
	"github.com/tasker-go/tasker/plan"
	"github.com/tasker-go/tasker/store"
	"github.com/tasker-go/tasker/template"
)

// compiledTemplate is a template version prepared for the hot path: graph
// edges as indices, configs as ready JSON, the context schema compiled.
// Template versions are immutable, so these are cached for good.
type compiledTemplate struct {
	tmpl     *template.Template
	schema   *template.ContextSchema
	index    map[string]int
	parents  [][]int
	children [][]int
	configs  [][]byte
	backoff  []plan.Backoff
	timeouts []time.Duration
	// taskKeys holds one program per task-level concurrency entry;
	// stepKeys[i] one per step i's concurrency entry; limitKeys[i][j] the
	// key of step i's rate_limits[j], nil where it has none. Compiled once
	// here so admission only evaluates.
	taskKeys  []*expr.Program
	stepKeys  [][]*expr.Program
	limitKeys [][]*expr.Program
	// forEach[i] is step i's for_each list expression; nil where it has
	// none, and nil as a whole for a template without for_each.
	forEach []*expr.ListProgram
}

func compile(t *template.Template) (*compiledTemplate, error) {
	schema, err := template.CompileContextSchema(t.ContextSchema)
	if err != nil {
		return nil, fmt.Errorf("compile context schema of %s/%s@%s: %w", t.Namespace, t.Name, t.Version, err)
	}
	n := len(t.Steps)
	ct := &compiledTemplate{
		tmpl:     t,
		schema:   schema,
		index:    t.StepIndex(),
		parents:  make([][]int, n),
		children: make([][]int, n),
		configs:  make([][]byte, n),
		backoff:  make([]plan.Backoff, n),
		timeouts: make([]time.Duration, n),
	}
	if ct.taskKeys, err = compileKeys(t.Concurrency); err != nil {
		return nil, fmt.Errorf("compile concurrency keys of %s/%s@%s: %w", t.Namespace, t.Name, t.Version, err)
	}
	if n > 0 {
		ct.stepKeys = make([][]*expr.Program, n)
		ct.limitKeys = make([][]*expr.Program, n)
	}
	for i, s := range t.Steps {
		if ct.stepKeys[i], err = compileKeys(s.Concurrency); err != nil {
			return nil, fmt.Errorf("compile concurrency keys of step %q of %s/%s@%s: %w", s.Name, t.Namespace, t.Name, t.Version, err)
		}
		if len(s.RateLimits) > 0 {
			ct.limitKeys[i] = make([]*expr.Program, len(s.RateLimits))
			for j, u := range s.RateLimits {
				if u.Key == "" {
					continue
				}
				if ct.limitKeys[i][j], err = expr.Compile(u.Key); err != nil {
					return nil, fmt.Errorf("compile rate_limits[%d].key of step %q of %s/%s@%s: %w", j, s.Name, t.Namespace, t.Name, t.Version, err)
				}
			}
		}
		for _, d := range s.DependsOn {
			p := ct.index[d]
			ct.parents[i] = append(ct.parents[i], p)
			ct.children[p] = append(ct.children[p], i)
		}
		ct.configs[i] = []byte("{}")
		if len(s.Config) > 0 {
			ct.configs[i] = s.Config
		}
		ct.backoff[i] = plan.Backoff{
			Initial:    time.Duration(s.Backoff.Initial),
			Multiplier: s.Backoff.Multiplier,
			Max:        time.Duration(s.Backoff.Max),
		}
		ct.timeouts[i] = time.Duration(s.Timeout)
		if s.ForEach != "" {
			if ct.forEach == nil {
				ct.forEach = make([]*expr.ListProgram, n)
			}
			if ct.forEach[i], err = expr.CompileList(s.ForEach); err != nil {
				return nil, fmt.Errorf("compile for_each of step %q of %s/%s@%s: %w", s.Name, t.Namespace, t.Name, t.Version, err)
			}
		}
	}
	return ct, nil
}

// compileKeys compiles the keys of a concurrency list; nil for none.
func compileKeys(cs []template.Concurrency) ([]*expr.Program, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	out := make([]*expr.Program, len(cs))
	for i, c := range cs {
		p, err := expr.Compile(c.Key)
		if err != nil {
			return nil, fmt.Errorf("concurrency[%d].key: %w", i, err)
		}
		out[i] = p
	}
	return out, nil
}

// templateBook registers templates and serves compiled versions from a
// cache in front of the store.
type templateBook struct {
	store  store.Store
	limits template.Limits

	mu    sync.RWMutex // protects cache
	cache map[string]*compiledTemplate
}

func newTemplateBook(s store.Store, lim template.Limits) *templateBook {
	return &templateBook{store: s, limits: lim, cache: map[string]*compiledTemplate{}}
}

func templateKey(ns, name, version string) string { return ns + "/" + name + "@" + version }

// register normalizes, validates and stores t.
func (b *templateBook) register(ctx context.Context, t *template.Template, now time.Time) (*template.Template, bool, error) {
	t.Normalize()
	if err := template.Validate(t, b.limits); err != nil {
		return nil, false, err
	}
	if err := b.checkRateLimits(ctx, t); err != nil {
		return nil, false, err
	}
	if err := b.checkChildren(ctx, t); err != nil { // children.go
		return nil, false, err
	}
	spec, err := json.Marshal(t)
	if err != nil {
		return nil, false, fmt.Errorf("encode template: %w", err)
	}
	_, created, err := b.store.TemplateRegister(ctx, &store.TemplateRegisterParams{
		Namespace: t.Namespace, Name: t.Name, Version: t.Version,
		Digest: template.Digest(t), Spec: spec, At: now,
	})
	if err != nil {
		if errors.Is(err, store.ErrTemplateExists) {
			return nil, false, fmt.Errorf("%s: %w; register it under a new version", templateKey(t.Namespace, t.Name, t.Version), err)
		}
		return nil, false, fmt.Errorf("store template: %w", err)
	}
	return t, created, nil
}

// get returns a compiled template; an empty version means the highest
// registered one.
func (b *templateBook) get(ctx context.Context, ns, name, version string) (*compiledTemplate, error) {
	if version == "" {
		v, err := b.latest(ctx, ns, name)
		if err != nil {
			return nil, err
		}
		version = v
	}
	key := templateKey(ns, name, version)
	b.mu.RLock()
	ct := b.cache[key]
	b.mu.RUnlock()
	if ct != nil {
		return ct, nil
	}
	st, err := b.store.TemplateGet(ctx, &store.TemplateGetParams{Namespace: ns, Name: name, Version: version})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFoundf("template %s is not registered", key)
		}
		return nil, fmt.Errorf("load template %s: %w", key, err)
	}
	var t template.Template
	if err := json.Unmarshal(st.Spec, &t); err != nil {
		return nil, fmt.Errorf("decode stored template %s: %w", key, err)
	}
	// Stored templates were normalized when registered; doing it again is
	// a no-op for them and gives older rows today's defaults, so nothing
	// downstream fills in defaults of its own.
	t.Normalize()
	ct, err = compile(&t)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.cache[key] = ct
	b.mu.Unlock()
	return ct, nil
}

func (b *templateBook) latest(ctx context.Context, ns, name string) (string, error) {
	all, err := b.store.TemplateList(ctx, &store.TemplateListParams{Namespace: ns, Name: name})
	if err != nil {
		return "", fmt.Errorf("list templates: %w", err)
	}
	var best *semver.Version
	for _, t := range all {
		v, err := semver.NewVersion(t.Version)
		if err != nil {
			continue
		}
		if best == nil || v.GreaterThan(best) {
			best = v
		}
	}
	if best == nil {
		return "", notFoundf("template %s/%s is not registered", ns, name)
	}
	return best.Original(), nil
}

// checkRateLimits refuses a normalized template whose steps use a rate
// limit that is not defined, or take more units than its burst (such a
// step could never be dispatched). The error is a *template.ValidationError.
// A limit deleted or lowered just after this check is the admission
// engine's to report; DeleteRateLimit and SetRateLimit refuse it for
// templates registered before.
func (b *templateBook) checkRateLimits(ctx context.Context, t *template.Template) error {
	limits := map[string]*store.RateLimit{}
	for _, s := range t.Steps {
		for j, u := range s.RateLimits {
			rl, seen := limits[u.Name]
			if !seen {
				got, err := b.store.RateLimitGet(ctx, u.Name)
				switch {
				case errors.Is(err, store.ErrNotFound):
				case err != nil:
					return fmt.Errorf("load rate limit %q: %w", u.Name, err)
				default:
					rl = got
				}
				limits[u.Name] = rl
			}
			if rl == nil {
				return &template.ValidationError{Step: s.Name, Field: fmt.Sprintf("rate_limits[%d].name", j),
					Message: fmt.Sprintf("no rate limit named %q; define it with: tasker limit set %s --rate N/s", u.Name, u.Name)}
			}
			if int64(u.Units) > rl.Burst {
				return &template.ValidationError{Step: s.Name, Field: fmt.Sprintf("rate_limits[%d].units", j),
					Message: fmt.Sprintf("%d is more than rate limit %q's burst of %d, so the step could never be dispatched; take fewer units or raise the burst (tasker limit set %s --burst %d ...)", u.Units, u.Name, rl.Burst, u.Name, u.Units)}
			}
		}
	}
	return nil
}

// list returns stored templates, decoded.
func (b *templateBook) list(ctx context.Context, ns string) ([]*template.Template, error) {
	all, err := b.store.TemplateList(ctx, &store.TemplateListParams{Namespace: ns})
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	out := make([]*template.Template, 0, len(all))
	for _, st := range all {
		var t template.Template
		if err := json.Unmarshal(st.Spec, &t); err != nil {
			return nil, fmt.Errorf("decode stored template %s: %w", templateKey(st.Namespace, st.Name, st.Version), err)
		}
		out = append(out, &t)
	}
	return out, nil
}

// check runs every check registering t would (the template's own
// validity, the limits, and different content already stored under its
// namespace, name and version) and stores nothing. It returns t normalized,
// and whether registering it would store a new version.
func (b *templateBook) check(ctx context.Context, t *template.Template) (*template.Template, bool, error) {
	t.Normalize()
	if err := template.Validate(t, b.limits); err != nil {
		return nil, false, err
	}
	if err := b.checkRateLimits(ctx, t); err != nil {
		return nil, false, err
	}
	if err := b.checkChildren(ctx, t); err != nil { // children.go
		return nil, false, err
	}
	key := templateKey(t.Namespace, t.Name, t.Version)
	existing, err := b.store.TemplateGet(ctx, &store.TemplateGetParams{Namespace: t.Namespace, Name: t.Name, Version: t.Version})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return t, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("load template %s: %w", key, err)
	case existing.Digest != template.Digest(t):
		// The words registering says on the same conflict (the stores'
		// and templateBook.register's), so a check and a registration
		// read alike.
		return nil, false, fmt.Errorf("%s: template %s has digest %s, not %s: %w; register it under a new version",
			key, key, existing.Digest, template.Digest(t), store.ErrTemplateExists)
	}
	return t, false, nil
}
