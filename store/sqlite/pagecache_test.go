package sqlite

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriterCacheKiB(t *testing.T) {
	for _, c := range []struct {
		pages, pageSize, want int64
	}{
		{0, 4096, smallWriterCacheKiB},
		{55_000, 4096, smallWriterCacheKiB},
		{262_144, 4096, smallWriterCacheKiB}, // the page before the lock page
		{262_145, 4096, largeWriterCacheKiB}, // the lock page: the database passed 1 GiB
		{3_000_000, 4096, largeWriterCacheKiB},
		{131_072, 8192, smallWriterCacheKiB},
		{131_073, 8192, largeWriterCacheKiB},
		{10, 0, smallWriterCacheKiB},
	} {
		require.Equal(t, c.want, writerCacheKiB(c.pages, c.pageSize), "%d pages of %d bytes", c.pages, c.pageSize)
	}
}

// The writer starts with the small cache on a small store, and the
// committer's look at the size keeps it (a store past 1 GiB would take a
// while to make in a test; writerCacheKiB's table covers the switch).
func TestWriterCacheSetAtOpen(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	cacheSize := func() int64 {
		var n int64
		require.NoError(t, s.write(t.Context(), "read cache size", func(ctx context.Context, tx *wtx) error {
			return tx.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&n)
		}))
		return n
	}
	require.EqualValues(t, -smallWriterCacheKiB, cacheSize())
	s.batches = cacheCheckEvery // the next batch looks at the size again
	require.EqualValues(t, -smallWriterCacheKiB, cacheSize())
	require.Zero(t, s.batches)
}
