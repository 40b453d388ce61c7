package sqlite

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every connection opens with its page cache: the writer's small one, the
// readers' larger one (pagecache.go).
func TestPageCacheSizes(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	var writer, reader int64
	require.NoError(t, s.write(t.Context(), "read cache size", func(ctx context.Context, tx *wtx) error {
		return tx.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&writer)
	}))
	require.NoError(t, s.reader.QueryRowContext(t.Context(), "PRAGMA cache_size").Scan(&reader))
	require.EqualValues(t, -writerCacheKiB, writer)
	require.EqualValues(t, -readerCacheKiB, reader)
}
