package sqlite

// Page caches per connection, in KiB (SQLite's negative cache_size).
//
// The writer's is small. While the database is smaller than the page that
// holds SQLite's lock bytes (at 1 GiB), every commit scans the writer's
// whole page cache: when a b-tree page splits, SQLite moves a page through
// that page's number for a moment (balance_nonroot), which leaves the
// cache's highest key there, and the commit's truncation of the cache to
// the database's size then walks every slot of it. Measured under
// scripts/load-create-task.sh on a 227 MB store: 3.2-4.2 % of the
// coordinator's CPU in that walk with 32 MiB, 0.6-0.9 % with 8 MiB, and
// the reads the smaller cache misses (served by the kernel's page cache)
// under 0.1 %. Past 1 GiB a larger writer cache bought nothing either:
// linear4 at concurrency 500 on a store of 1,000,000 steps against an
// empty one (scripts/perf-table's stored-steps row, two runs of three
// alternated pairs each) ran -3.3 and -2.9 % with 32 MiB past 1 GiB,
// +0.2 and -3.6 % with 8 MiB, while its peak RSS rose 29 and 31 % against
// 2.1 and -0.3 %: the writer works at the right edge of its b-trees (new
// ids are time-ordered) and on the interior pages above it.
//
// A reader's is larger (SQLite's default is 2 MiB): reads of older tasks
// find the interior pages of steps and transitions in memory as the store
// grows.
const (
	writerCacheKiB = 8 << 10
	readerCacheKiB = 32 << 10
)
