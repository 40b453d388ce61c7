package sqlite

import (
	"context"
	"fmt"
	"strconv"
)

// Page cache of the writer's connection, in KiB (SQLite's negative
// cache_size). While the database is smaller than the page that holds
// SQLite's lock bytes (at 1 GiB), every commit scans the writer's whole
// page cache: when a b-tree page splits, SQLite moves a page through that
// page's number for a moment (balance_nonroot), which leaves the cache's
// highest key there, and the commit's truncation of the cache to the
// database's size then walks every slot of it. Measured under
// scripts/load-create-task.sh on a 227 MB store: 3.2-4.2 % of the
// coordinator's CPU in that walk with 32 MiB, 0.6-0.9 % with 8 MiB, and
// the reads the smaller cache misses (served by the kernel's page cache)
// under 0.1 %. Past the lock page the walk is gone (the cache's highest key
// is a real page), and a larger cache keeps more of a large store's
// interior pages.
const (
	smallWriterCacheKiB = 8 << 10
	largeWriterCacheKiB = 32 << 10
)

// pendingBytePage is the number of the page holding SQLite's lock bytes,
// which it never stores data in: the page at offset 1 GiB.
func pendingBytePage(pageSize int64) int64 { return (1<<30)/pageSize + 1 }

// writerCacheKiB is the writer's page cache for a database of pageCount
// pages of pageSize bytes.
func writerCacheKiB(pageCount, pageSize int64) int64 {
	if pageSize > 0 && pageCount >= pendingBytePage(pageSize) {
		return largeWriterCacheKiB
	}
	return smallWriterCacheKiB
}

// cacheCheckEvery is how many batches the committer runs between looks at
// the database's size.
const cacheCheckEvery = 1024

// sizeWriterCache sets the writer's page cache for the database's size,
// on the writer's connection between two batches. Called by the committer
// only.
func (s *Store) sizeWriterCache(ctx context.Context) error {
	if s.pageSize == 0 {
		// Fixed once the database exists: read once.
		if err := s.wconn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&s.pageSize); err != nil {
			return fmt.Errorf("read page size: %w", err)
		}
	}
	var pages int64
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return fmt.Errorf("read page count: %w", err)
	}
	want := writerCacheKiB(pages, s.pageSize)
	if want == s.writerCacheKiB {
		return nil
	}
	if _, err := s.wconn.ExecContext(ctx, "PRAGMA cache_size = -"+strconv.FormatInt(want, 10)); err != nil {
		return fmt.Errorf("set cache size: %w", err)
	}
	s.writerCacheKiB = want
	return nil
}
