package sqlite

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/store/storetest"
)

// walGeneration reads the part of the WAL's header that SQLite changes
// each time it starts the WAL over: the checkpoint sequence number and the
// salts.
func walGeneration(path string) ([]byte, error) {
	f, err := os.Open(path + "-wal")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 12)
	if _, err := f.ReadAt(b, 12); err != nil {
		return nil, err
	}
	return b, nil
}

// Under writes that never pause, the WAL still starts over, again and
// again: the committer finishes what the background checkpoint left
// between two batches. Without that, no write ever began with the whole
// WAL copied, and the WAL grew by every page written for as long as the
// writes went on.
func TestWALStartsOverUnderSustainedWrites(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tasker.db")
	s := openStore(t, Config{Path: path})
	ctx, stop := context.WithCancel(context.Background())
	var (
		wg     sync.WaitGroup
		writes atomic.Int64
		failed atomic.Value
	)
	at := time.Unix(1_700_000_000, 0)
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, _, err := s.TaskCreate(ctx, storetest.TaskParams("ns", at, "a", "b", "c", "d")); err != nil && ctx.Err() == nil {
					failed.Store(err)
					return
				}
				writes.Add(1)
			}
		})
	}
	defer func() {
		stop()
		wg.Wait()
	}()

	var starts int
	last, err := walGeneration(path)
	require.NoError(t, err)
	var readErr error
	require.Eventually(t, func() bool {
		g, err := walGeneration(path)
		if err != nil || failed.Load() != nil {
			readErr = err
			return true
		}
		if !bytes.Equal(g, last) {
			starts, last = starts+1, g
		}
		return starts >= 3
	}, 60*time.Second, time.Millisecond, "the WAL did not start over three times while the writes went on")
	require.NoError(t, readErr)
	require.Nil(t, failed.Load())
	t.Logf("the WAL started over %d times in %d writes", starts, writes.Load())
}
