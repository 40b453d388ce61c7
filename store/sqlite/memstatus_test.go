package sqlite

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store"
)

// TestSQLiteKeepsNoAllocationStatistics checks that the package turned
// SQLite's allocation statistics (and the global lock they take) off
// before its first open.
func TestSQLiteKeepsNoAllocationStatistics(t *testing.T) {
	t.Parallel()
	s := openStore(t, Config{})
	_, err := s.TaskList(t.Context(), &store.TaskListParams{})
	require.NoError(t, err)
	require.False(t, sqliteMemoryCounted(), "SQLite counts its allocations: SQLITE_CONFIG_MEMSTATUS was not turned off before it initialized")
}
