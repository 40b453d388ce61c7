package sqlite

/*
#include <stdint.h>

int sqlite3_config(int, ...);
int sqlite3_status64(int, int64_t *, int64_t *, int);

// From sqlite3.h: SQLITE_CONFIG_MEMSTATUS, SQLITE_STATUS_MEMORY_USED.
static int tasker_sqlite_memstatus_off(void) { return sqlite3_config(9, 0); }
static int64_t tasker_sqlite_memory_used(void) {
	int64_t cur = 0, high = 0;
	sqlite3_status64(0, &cur, &high, 0);
	return cur;
}
*/
import "C"

// SQLite counts every allocation it makes in process-wide statistics,
// taking a global mutex on each malloc and free to do so (the
// SQLITE_CONFIG_MEMSTATUS default). Nothing here reads those statistics,
// and the lock and unlock were 3-4% of the coordinator's CPU under load.
// The setting must be made before SQLite initializes, at its first open,
// so it is made as the package initializes; should SQLite already be
// initialized (another package opened a database first), the call fails
// harmlessly and the statistics stay on.
func init() {
	C.tasker_sqlite_memstatus_off()
}

// sqliteMemoryCounted reports whether SQLite keeps its allocation
// statistics: with them off it reports no memory in use.
func sqliteMemoryCounted() bool {
	return C.tasker_sqlite_memory_used() != 0
}
