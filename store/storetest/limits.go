package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
)

func (s *suite) rateLimits(t *testing.T) {
	t.Run("RateLimitSet", func(t *testing.T) {
		t.Parallel()

		t.Run("CreatesThenReplaces", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			created := f.now()
			got, err := f.store.RateLimitSet(f.ctx, &store.RateLimitSetParams{
				Name: "stripe", Units: 100, Period: time.Second, Burst: 20, At: created,
			})
			require.NoError(t, err)
			require.Equal(t, &store.RateLimit{
				Name: "stripe", Units: 100, Period: time.Second, Burst: 20, CreatedAt: created, UpdatedAt: created,
			}, got)

			updated := f.now()
			got, err = f.store.RateLimitSet(f.ctx, &store.RateLimitSetParams{
				Name: "stripe", Units: 5, Period: 1500 * time.Millisecond, Burst: 1, At: updated,
			})
			require.NoError(t, err)
			want := &store.RateLimit{
				Name: "stripe", Units: 5, Period: 1500 * time.Millisecond, Burst: 1, CreatedAt: created, UpdatedAt: updated,
			}
			require.Equal(t, want, got, "an update keeps created_at")

			// Another store on the same database reads what was written.
			again, err := f.open(t).RateLimitGet(f.ctx, "stripe")
			require.NoError(t, err)
			require.Equal(t, want, again)
		})

		t.Run("RefusesBadValues", func(t *testing.T) {
			t.Parallel()
			f := s.setup(t)
			good := store.RateLimitSetParams{Name: "x", Units: 1, Period: time.Minute, Burst: 1, At: f.now()}
			for name, edit := range map[string]func(*store.RateLimitSetParams){
				"no name":         func(p *store.RateLimitSetParams) { p.Name = "" },
				"zero units":      func(p *store.RateLimitSetParams) { p.Units = 0 },
				"negative units":  func(p *store.RateLimitSetParams) { p.Units = -1 },
				"zero period":     func(p *store.RateLimitSetParams) { p.Period = 0 },
				"negative period": func(p *store.RateLimitSetParams) { p.Period = -time.Second },
				"sub-millisecond": func(p *store.RateLimitSetParams) { p.Period = time.Millisecond + time.Microsecond },
				"zero burst":      func(p *store.RateLimitSetParams) { p.Burst = 0 },
			} {
				p := good
				edit(&p)
				_, err := f.store.RateLimitSet(f.ctx, &p)
				require.Error(t, err, name)
			}
			_, err := f.store.RateLimitSet(f.ctx, nil)
			require.Error(t, err)
			list, err := f.store.RateLimitList(f.ctx)
			require.NoError(t, err)
			require.Empty(t, list, "nothing stored")
		})
	})

	t.Run("RateLimitGet", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		_, err := f.store.RateLimitGet(f.ctx, "missing")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("RateLimitList", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		list, err := f.store.RateLimitList(f.ctx)
		require.NoError(t, err)
		require.Empty(t, list)
		// Byte order, as names are compared everywhere else.
		for _, name := range []string{"b", "a.2", "B", "a-1", "a_3"} {
			_, err := f.store.RateLimitSet(f.ctx, &store.RateLimitSetParams{Name: name, Units: 1, Period: time.Second, Burst: 1, At: f.now()})
			require.NoError(t, err)
		}
		list, err = f.store.RateLimitList(f.ctx)
		require.NoError(t, err)
		var names []string
		for _, l := range list {
			names = append(names, l.Name)
		}
		require.Equal(t, []string{"B", "a-1", "a.2", "a_3", "b"}, names)
	})

	t.Run("RateLimitDelete", func(t *testing.T) {
		t.Parallel()
		f := s.setup(t)
		_, err := f.store.RateLimitSet(f.ctx, &store.RateLimitSetParams{Name: "stripe", Units: 1, Period: time.Second, Burst: 1, At: f.now()})
		require.NoError(t, err)
		_, err = f.store.RateLimitSet(f.ctx, &store.RateLimitSetParams{Name: "other", Units: 1, Period: time.Second, Burst: 1, At: f.now()})
		require.NoError(t, err)

		require.NoError(t, f.store.RateLimitDelete(f.ctx, "stripe"))
		_, err = f.store.RateLimitGet(f.ctx, "stripe")
		require.ErrorIs(t, err, store.ErrNotFound)
		require.ErrorIs(t, f.store.RateLimitDelete(f.ctx, "stripe"), store.ErrNotFound, "a second delete finds nothing")

		list, err := f.store.RateLimitList(f.ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, "other", list[0].Name)
	})
}
