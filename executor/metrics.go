package executor

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the executor's Prometheus instruments, by handler.
type metrics struct {
	finished *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, e *Executor) *metrics {
	m := &metrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_executor_steps_total", Help: "Step attempts this executor finished, by handler and outcome (success, retryable, permanent).",
		}, []string{"handler", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_executor_step_duration_seconds", Help: "Handler run time, by handler.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 22),
		}, []string{"handler"}),
	}
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tasker_executor_running", Help: "Step attempts running now; never more than the capacity.",
	}, func() float64 {
		e.mu.Lock()
		defer e.mu.Unlock()
		return float64(e.active)
	})
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tasker_executor_queued", Help: "Step attempts accepted and waiting for a free slot (a coordinator dispatched on a share the executor had just lowered).",
	}, func() float64 {
		e.mu.Lock()
		defer e.mu.Unlock()
		return float64(len(e.queue))
	})
	capacity := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tasker_executor_capacity", Help: "Steps this executor runs at once.",
	})
	capacity.Set(float64(e.cfg.Capacity))
	reg.MustRegister(m.finished, m.duration, running, queued, capacity)
	return m
}

func (m *metrics) observe(handler, outcome string, took time.Duration) {
	m.finished.WithLabelValues(handler, outcome).Inc()
	m.duration.WithLabelValues(handler).Observe(took.Seconds())
}
