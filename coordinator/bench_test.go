package coordinator_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tasker-go/tasker/coordinator"
	"github.com/tasker-go/tasker/executor"
	coordinatorv1 "github.com/tasker-go/tasker/gen/tasker/coordinator/v1"
)

const benchLinear4 = `
namespace: bench
name: linear4
version: 1.0.0
steps:
  - name: a
    handler: noop
  - name: b
    handler: noop
    depends_on: [a]
  - name: c
    handler: noop
    depends_on: [b]
  - name: d
    handler: noop
    depends_on: [c]
`

// BenchmarkTask runs linear4 tasks end to end through a real coordinator,
// SQLite file (synchronous=FULL) and executor over loopback gRPC: create,
// then watch until complete. One op is one task; steps/s is reported.
func BenchmarkTask(b *testing.B) {
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("shape=linear4/concurrency=%d", conc), func(b *testing.B) {
			h, n := nodeHarness(b, coordinator.Config{}, 0)
			runExecutor(h, executor.Config{Capacity: 1024}, listen(h.t), nil)
			h.apply(benchLinear4)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			next := make(chan int)
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						resp, err := h.client.CreateTask(h.ctx, &coordinatorv1.CreateTaskRequest{Namespace: "bench", Name: "linear4", IdempotencyKey: fmt.Sprint(i)})
						if err != nil {
							b.Error(err)
							return
						}
						stream, err := h.client.WatchTask(context.Background(), &coordinatorv1.WatchTaskRequest{Id: resp.GetTask().GetId()})
						if err != nil {
							b.Error(err)
							return
						}
						for {
							if _, err := stream.Recv(); err != nil {
								break
							}
						}
					}
				}()
			}
			for i := 0; i < b.N; i++ {
				next <- i
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(4*b.N)/time.Since(start).Seconds(), "steps/s")
			st := n.store.Stats()
			b.ReportMetric(float64(st.Requests)/float64(max(st.Commits, 1)), "writes/commit")
		})
	}
}
