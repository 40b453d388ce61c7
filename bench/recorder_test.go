package bench

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-go/tasker/executor"
)

func TestRecorderCountsDuplicatesAndKeepsFirstReceive(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	t0 := time.Unix(1_700_000_000, 0)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() { r.record(fmt.Sprintf("step-%d", i), 1, t0.Add(time.Duration(i))) })
	}
	wg.Wait()
	inv, steps := r.Counts()
	require.Equal(t, int64(100), inv)
	require.Equal(t, int64(100), steps)

	// A second delivery of the same attempt and a retry are invocations,
	// not new steps, and the first receive time of an attempt stays.
	r.record("step-7", 1, t0.Add(time.Hour))
	r.record("step-7", 2, t0.Add(2*time.Hour))
	inv, steps = r.Counts()
	require.Equal(t, int64(102), inv)
	require.Equal(t, int64(100), steps)
	at, ok := r.ReceivedAt("step-7", 1)
	require.True(t, ok)
	require.True(t, at.Equal(t0.Add(7)), at)
	at, ok = r.ReceivedAt("step-7", 2)
	require.True(t, ok)
	require.True(t, at.Equal(t0.Add(2*time.Hour)))
	_, ok = r.ReceivedAt("step-7", 3)
	require.False(t, ok)
}

func TestRecorderHandleSucceedsWithoutResults(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	res, err := r.Handle(t.Context(), &executor.Request{StepID: "s-1", Attempt: 1})
	require.NoError(t, err)
	require.Nil(t, res)
	_, ok := r.ReceivedAt("s-1", 1)
	require.True(t, ok)
}
