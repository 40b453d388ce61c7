package groupcommit

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tasker-go/tasker/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordingCommit commits every request by appending its work to a log,
// refusing work < 0 alone, and failing the whole batch when fail is set.
type recordingCommit struct {
	mu      sync.Mutex
	batches [][]int
	fail    error
}

func (r *recordingCommit) commit(batch []*Request[int], outcomes []error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	var got []int
	for i, req := range batch {
		if req.Work < 0 {
			outcomes[i] = errors.New("refused")
			continue
		}
		got = append(got, req.Work)
	}
	r.batches = append(r.batches, got)
	return nil
}

func classifyAsUnavailable(err error, _ int) error { return errors.Join(store.ErrUnavailable, err) }

func TestSubmitAnswersEachWriteAndBatchesUnderLoad(t *testing.T) {
	t.Parallel()
	rec := &recordingCommit{}
	c := Start(64, rec.commit, classifyAsUnavailable)
	defer c.Close()

	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Go(func() {
			work := i
			if i%50 == 0 {
				work = -1
			}
			errs[i] = c.Submit(t.Context(), "write", work)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%50 == 0 {
			require.EqualError(t, err, "refused", "a refused write fails alone")
			continue
		}
		require.NoError(t, err)
	}
	st := c.Stats()
	require.EqualValues(t, 200, st.Requests)
	require.EqualValues(t, 200, st.Taken)
	require.Less(t, st.Commits, st.Requests, "concurrent writes shared transactions")
	for _, b := range rec.batches {
		require.LessOrEqual(t, len(b), 64)
	}
}

func TestFailedBatchFailsEveryWrite(t *testing.T) {
	t.Parallel()
	rec := &recordingCommit{fail: errors.New("disk full")}
	c := Start(8, rec.commit, classifyAsUnavailable)
	defer c.Close()
	batch := []*Request[int]{NewRequest("a", 1), NewRequest("b", 2)}
	c.RunBatch(batch)
	for _, req := range batch {
		err := req.Wait()
		require.ErrorIs(t, err, store.ErrUnavailable)
		require.ErrorContains(t, err, "batch of 2 writes failed")
	}
	require.Zero(t, c.Stats().Commits)
}

func TestClosedAndWithdrawn(t *testing.T) {
	t.Parallel()
	c := Start(8, (&recordingCommit{}).commit, classifyAsUnavailable)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, c.Submit(ctx, "late", 1), context.Canceled, "a cancelled caller is not queued")
	c.Close()
	require.True(t, c.Closed())
	require.ErrorIs(t, c.Submit(context.Background(), "after", 1), store.ErrClosed)
	require.Zero(t, c.Stats().Taken)
}
