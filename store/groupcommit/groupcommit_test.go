package groupcommit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

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

// heldCommit is recordingCommit whose first batch waits, once it has
// started, until the test releases it: the writes submitted meanwhile are
// provably queued, not merely likely to overlap.
type heldCommit struct {
	recordingCommit
	started, release chan struct{}
	first            sync.Once
	sizes            []int // of every batch, refused requests included; guarded by recordingCommit.mu
}

func newHeldCommit() *heldCommit {
	return &heldCommit{started: make(chan struct{}), release: make(chan struct{})}
}

func (h *heldCommit) commit(batch []*Request[int], outcomes []error) error {
	h.first.Do(func() {
		close(h.started)
		<-h.release
	})
	h.mu.Lock()
	h.sizes = append(h.sizes, len(batch))
	h.mu.Unlock()
	return h.recordingCommit.commit(batch, outcomes)
}

// TestSubmitAnswersEachWriteAndBatchesUnderLoad holds the committer in its
// first batch while 199 more writes queue, then checks that they were
// committed together, in as few batches as maxBatch allows, each write
// answered with its own outcome.
func TestSubmitAnswersEachWriteAndBatchesUnderLoad(t *testing.T) {
	t.Parallel()
	const writes, maxBatch = 200, 64
	rec := newHeldCommit()
	c := Start(maxBatch, rec.commit, classifyAsUnavailable)
	defer c.Close()

	errs := make([]error, writes)
	submit := func(i int) {
		work := i
		if i%50 == 0 {
			work = -1
		}
		errs[i] = c.Submit(t.Context(), "write", work)
	}
	var wg sync.WaitGroup
	wg.Go(func() { submit(0) })
	<-rec.started
	for i := 1; i < writes; i++ {
		wg.Go(func() { submit(i) })
	}
	require.Eventually(t, func() bool { return c.Stats().Queued == writes-1 }, 30*time.Second, time.Millisecond,
		"every later write queues behind the held batch")
	close(rec.release)
	wg.Wait()

	for i, err := range errs {
		if i%50 == 0 {
			require.EqualError(t, err, "refused", "a refused write fails alone")
			continue
		}
		require.NoError(t, err, "write %d", i)
	}
	st := c.Stats()
	require.EqualValues(t, writes, st.Requests)
	require.EqualValues(t, writes, st.Taken)
	require.Zero(t, st.Queued)
	// The held batch, then the 199 queued writes in full batches: writes
	// committed one at a time would take 200 commits.
	require.Equal(t, []int{1, maxBatch, maxBatch, maxBatch, writes - 1 - 3*maxBatch}, rec.sizes,
		"queued writes are committed together, maxBatch at a time")
	require.EqualValues(t, len(rec.sizes), st.Commits)
	committed := 0
	for _, b := range rec.batches {
		committed += len(b)
	}
	require.Equal(t, writes-writes/50, committed, "every write but the refused ones is committed once")
}

// TestQueuedWriteIsWithdrawnOrClosed: a queued write whose context ends is
// withdrawn and never committed; writes still queued at Close get
// ErrClosed.
func TestQueuedWriteIsWithdrawnOrClosed(t *testing.T) {
	t.Parallel()
	rec := newHeldCommit()
	c := Start(8, rec.commit, classifyAsUnavailable)

	held := make(chan error, 1)
	go func() { held <- c.Submit(t.Context(), "held", 1) }()
	<-rec.started

	ctx, cancel := context.WithCancel(t.Context())
	withdrawn := make(chan error, 1)
	go func() { withdrawn <- c.Submit(ctx, "withdrawn", 2) }()
	require.Eventually(t, func() bool { return c.Stats().Queued == 1 }, 30*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-withdrawn, context.Canceled)
	require.Zero(t, c.Stats().Queued)

	closed := make(chan error, 1)
	go func() { closed <- c.Submit(t.Context(), "closed", 3) }()
	require.Eventually(t, func() bool { return c.Stats().Queued == 1 }, 30*time.Second, time.Millisecond)
	closeDone := make(chan struct{})
	go func() {
		c.Close()
		close(closeDone)
	}()
	require.ErrorIs(t, <-closed, store.ErrClosed, "a write queued at Close is answered at once")
	close(rec.release)
	<-closeDone
	require.NoError(t, <-held, "the batch under way at Close commits")
	require.Equal(t, [][]int{{1}}, rec.batches)
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

// BenchmarkSubmitIdle is one writer at a time against a committer whose
// commit does nothing: what a write to an idle store pays the committer
// itself. The writer commits its own batch (Submit leads it), so no
// goroutine hands the write over and back.
func BenchmarkSubmitIdle(b *testing.B) {
	c := Start(64, func(batch []*Request[int], _ []error) error { return nil }, classifyAsUnavailable)
	defer c.Close()
	ctx := context.Background()
	for b.Loop() {
		if err := c.Submit(ctx, "write", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubmitParallel is many writers at once: batches form while one
// commits.
func BenchmarkSubmitParallel(b *testing.B) {
	c := Start(64, func(batch []*Request[int], _ []error) error { return nil }, classifyAsUnavailable)
	defer c.Close()
	ctx := context.Background()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Submit(ctx, "write", 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
