package storetest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
)

func (s *suite) templates(t *testing.T) {
	t.Run("TemplateRegister", func(t *testing.T) {
		t.Parallel()

		t.Run("StoresNewVersion", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			p := f.templateParams("orders", "1.0.0", "sha256:aaa")

			tmpl, created, err := f.store.TemplateRegister(f.ctx, p)
			require.NoError(t, err)
			require.True(t, created)
			requireTemplate(t, p, tmpl)

			got, err := f.store.TemplateGet(f.ctx, &store.TemplateGetParams{Namespace: f.ns, Name: "orders", Version: "1.0.0"})
			require.NoError(t, err)
			requireTemplate(t, p, got)
		})

		t.Run("SameDigestIsIdempotent", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			first := f.templateParams("orders", "1.0.0", "sha256:aaa")
			_, _, err := f.store.TemplateRegister(f.ctx, first)
			require.NoError(t, err)

			// Same digest, later time: the stored version is returned as it
			// was first registered.
			again := f.templateParams("orders", "1.0.0", "sha256:aaa")
			tmpl, created, err := f.store.TemplateRegister(f.ctx, again)
			require.NoError(t, err)
			require.False(t, created)
			requireTemplate(t, first, tmpl)

			list, err := f.store.TemplateList(f.ctx, &store.TemplateListParams{Namespace: f.ns})
			require.NoError(t, err)
			require.Len(t, list, 1)
		})

		t.Run("DifferentDigestIsRefused", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			first := f.templateParams("orders", "1.0.0", "sha256:aaa")
			_, _, err := f.store.TemplateRegister(f.ctx, first)
			require.NoError(t, err)

			changed := f.templateParams("orders", "1.0.0", "sha256:bbb")
			changed.Spec = json.RawMessage(`{"steps":["other"]}`)
			_, _, err = f.store.TemplateRegister(f.ctx, changed)
			require.ErrorIs(t, err, store.ErrTemplateExists)

			got, err := f.store.TemplateGet(f.ctx, &store.TemplateGetParams{Namespace: f.ns, Name: "orders", Version: "1.0.0"})
			require.NoError(t, err)
			requireTemplate(t, first, got)
		})
	})

	t.Run("TemplateGet", func(t *testing.T) {
		t.Parallel()

		t.Run("UnknownIsNotFound", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			_, _, err := f.store.TemplateRegister(f.ctx, f.templateParams("orders", "1.0.0", "sha256:aaa"))
			require.NoError(t, err)

			for _, p := range []*store.TemplateGetParams{
				{Namespace: f.ns, Name: "orders", Version: "2.0.0"},
				{Namespace: f.ns, Name: "invoices", Version: "1.0.0"},
				{Namespace: "elsewhere", Name: "orders", Version: "1.0.0"},
			} {
				_, err := f.store.TemplateGet(f.ctx, p)
				require.ErrorIs(t, err, store.ErrNotFound, "%+v", p)
			}
		})
	})

	t.Run("TemplateList", func(t *testing.T) {
		t.Parallel()

		t.Run("OrderAndFilters", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			other := "other-" + f.ns
			// Registered out of order: the list sorts by namespace and name,
			// then keeps insertion order (2.0.0 before 1.0.0 here).
			regs := []*store.TemplateRegisterParams{
				f.templateParams("orders", "2.0.0", "d1"),
				f.templateParams("invoices", "1.0.0", "d2"),
				f.templateParams("orders", "1.0.0", "d3"),
				f.templateParams("orders", "1.0.0", "d3"), // repeat: no new row
			}
			otherNS := f.templateParams("orders", "1.0.0", "d4")
			otherNS.Namespace = other
			regs = append(regs, otherNS)
			for _, p := range regs {
				_, _, err := f.store.TemplateRegister(f.ctx, p)
				require.NoError(t, err)
			}

			keys := func(p *store.TemplateListParams) []string {
				t.Helper()
				list, err := f.store.TemplateList(f.ctx, p)
				require.NoError(t, err)
				out := make([]string, len(list))
				for i, tmpl := range list {
					out[i] = tmpl.Namespace + "/" + tmpl.Name + "@" + tmpl.Version
				}
				return out
			}
			ns := f.ns
			require.Equal(t, []string{
				ns + "/invoices@1.0.0", ns + "/orders@2.0.0", ns + "/orders@1.0.0", other + "/orders@1.0.0",
			}, keys(&store.TemplateListParams{}))
			require.Equal(t, []string{
				ns + "/invoices@1.0.0", ns + "/orders@2.0.0", ns + "/orders@1.0.0",
			}, keys(&store.TemplateListParams{Namespace: ns}))
			require.Equal(t, []string{
				ns + "/orders@2.0.0", ns + "/orders@1.0.0",
			}, keys(&store.TemplateListParams{Namespace: ns, Name: "orders"}))
			require.Equal(t, []string{
				ns + "/orders@2.0.0", ns + "/orders@1.0.0", other + "/orders@1.0.0",
			}, keys(&store.TemplateListParams{Name: "orders"}))
			require.Empty(t, keys(&store.TemplateListParams{Namespace: "nobody"}))
		})
	})
}

func (f *fixture) templateParams(name, version, digest string) *store.TemplateRegisterParams {
	return &store.TemplateRegisterParams{
		Namespace: f.ns,
		Name:      name,
		Version:   version,
		Digest:    digest,
		Spec:      json.RawMessage(`{"name":"` + name + `","steps":[{"name":"a","handler":"h"}]}`),
		At:        f.now(),
	}
}

func requireTemplate(t *testing.T, want *store.TemplateRegisterParams, got *store.Template) {
	t.Helper()
	require.NotNil(t, got)
	require.Equal(t, want.Namespace, got.Namespace)
	require.Equal(t, want.Name, got.Name)
	require.Equal(t, want.Version, got.Version)
	require.Equal(t, want.Digest, got.Digest)
	require.Equal(t, normJSON(t, want.Spec), normJSON(t, got.Spec))
	requireTimeEqual(t, want.At, got.CreatedAt, "CreatedAt")
}
