package bench

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tasker-go/tasker/executor"
)

// recorderShards spreads the recorder's map over several locks so that many
// executor goroutines recording at once do not queue on one mutex.
const recorderShards = 32

// attemptKey identifies one dispatch of one step.
type attemptKey struct {
	stepID  string
	attempt int
}

// recorderShard is one slice of the recorder's keys.
type recorderShard struct {
	// mu guards received and steps.
	mu sync.Mutex
	// received is the wall-clock receive time (Unix ns) of the first
	// invocation of each attempt; wall clock because it is compared with
	// the coordinator's transition timestamps.
	received map[attemptKey]int64
	// steps counts invocations per step across all attempts.
	steps map[string]int
}

// Recorder is the noop handler bench executors host. It notes when each
// (step, attempt) first arrived, to measure dispatch overhead, and how many
// times each step was invoked, to count duplicate dispatches.
type Recorder struct {
	seed   maphash.Seed
	shards [recorderShards]recorderShard
	now    func() time.Time
	// invocations and distinct mirror the maps so progress lines can read
	// them without walking every shard.
	invocations atomic.Int64
	distinct    atomic.Int64
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	r := &Recorder{seed: maphash.MakeSeed(), now: time.Now}
	for i := range r.shards {
		r.shards[i].received = make(map[attemptKey]int64)
		r.shards[i].steps = make(map[string]int)
	}
	return r
}

func (r *Recorder) shard(stepID string) *recorderShard {
	return &r.shards[maphash.String(r.seed, stepID)%recorderShards]
}

// Handle is an executor.HandlerFunc that records the request and succeeds
// with empty results.
func (r *Recorder) Handle(_ context.Context, req *executor.Request) (any, error) {
	r.record(req.StepID, req.Attempt, r.now())
	return nil, nil
}

func (r *Recorder) record(stepID string, attempt int, at time.Time) {
	s := r.shard(stepID)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := attemptKey{stepID: stepID, attempt: attempt}
	if _, ok := s.received[k]; !ok {
		s.received[k] = at.UnixNano()
	}
	// invocations first and distinct second here, and the reverse order in
	// Counts, so a reader never sees more distinct steps than invocations.
	r.invocations.Add(1)
	if s.steps[stepID] == 0 {
		r.distinct.Add(1)
	}
	s.steps[stepID]++
}

// ReceivedAt returns when attempt of stepID first reached a handler.
func (r *Recorder) ReceivedAt(stepID string, attempt int) (time.Time, bool) {
	s := r.shard(stepID)
	s.mu.Lock()
	defer s.mu.Unlock()
	ns, ok := s.received[attemptKey{stepID: stepID, attempt: attempt}]
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// stepIDs returns every step invoked at least once.
func (r *Recorder) stepIDs() []string {
	var out []string
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for id := range s.steps {
			out = append(out, id)
		}
		s.mu.Unlock()
	}
	return out
}

// Counts returns the handler invocations and the distinct steps they were
// for; without faults or retries the two are equal.
func (r *Recorder) Counts() (invocations, steps int64) {
	steps = r.distinct.Load()
	return r.invocations.Load(), steps
}
