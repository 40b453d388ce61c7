package coordinator

import (
	"time"

	"github.com/tasker-go/tasker/store"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the coordinator's Prometheus instruments. Label sets are kept
// small and bounded (template, handler, state), never task or step ids.
type metrics struct {
	tasksCreated    *prometheus.CounterVec
	taskTransitions *prometheus.CounterVec
	stepTransitions *prometheus.CounterVec
	retries         *prometheus.CounterVec
	stepDuration    *prometheus.HistogramVec
	dispatchLatency *prometheus.HistogramVec
	storeWrite      prometheus.Histogram
	fencedWrites    prometheus.Counter
	leaseLost       prometheus.Counter
	wakes           prometheus.Counter
	repairs         prometheus.Counter
	tasksPruned     prometheus.Counter
	results         *prometheus.CounterVec
	streamMessages  *prometheus.CounterVec
	// admissionRefusals counts dispatches flow control held back, by
	// reason and by key or limit (without the key's value).
	admissionRefusals *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, e *engine) *metrics {
	m := &metrics{
		tasksCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_tasks_created_total", Help: "Tasks created, by template.",
		}, []string{"namespace", "name"}),
		taskTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_task_transitions_total", Help: "Task state transitions committed, by template and new state.",
		}, []string{"namespace", "name", "state"}),
		stepTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_step_transitions_total", Help: "Step state transitions committed, by template, handler and new state.",
		}, []string{"namespace", "name", "handler", "state"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_step_retries_total", Help: "Attempts dispatched after a failed one, by handler.",
		}, []string{"handler"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_step_attempt_duration_seconds", Help: "Time from dispatch to result of one attempt, by handler.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 20),
		}, []string{"handler"}),
		dispatchLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tasker_dispatch_latency_seconds", Help: "Time from a step becoming ready (its last parent's result committed) to its dispatch being sent, by handler.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 20),
		}, []string{"handler"}),
		fencedWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tasker_fenced_writes_total", Help: "Writes the store refused because this coordinator no longer owned the task (its lease lapsed or another coordinator took it over).",
		}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tasker_lease_lost_total", Help: "Times this coordinator lost its lease and dropped its tasks.",
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_step_results_total",
			Help: "Step results received from executors, by outcome: applied, or ignored (duplicate, stale, or for a task not run here).",
		}, []string{"outcome"}),
		streamMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_executor_stream_messages_total",
			Help: "Messages read from executors' Execute streams, by kind (result, heartbeat, progress).",
		}, []string{"kind"}),
		admissionRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tasker_admission_refusals_total",
			Help: "Task starts and step dispatches flow control held back, by reason (concurrency, rate_limit, priority, cancelled) and key or rate limit (without the key's value).",
		}, []string{"reason", "key"}),
		wakes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tasker_task_wakes_total", Help: "Times a task's retry timer fired (a backoff ended).",
		}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tasker_task_reloads_total", Help: "Reloads of a task from the store after one of its writes failed.",
		}),
		tasksPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tasker_tasks_pruned_total", Help: "Finished tasks deleted by task retention (--task-retention), by this coordinator.",
		}),
		storeWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tasker_store_write_seconds", Help: "Latency of one task's transaction as the engine sees it, including waiting for its group commit.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 20),
		}),
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tasker_tasks_active", Help: "Unfinished tasks this coordinator runs.",
	}, func() float64 {
		e.mu.Lock()
		defer e.mu.Unlock()
		return float64(len(e.tasks))
	})
	keyWaits := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tasker_concurrency_key_waits",
		Help: "Tasks here waiting for a full concurrency key to free a place (tasker_steps_waiting{reason=\"concurrency\"} counts their steps).",
	}, func() float64 { return float64(e.admission.count()) })
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tasker_step_results_held",
		Help: "Step results received and not yet stored: their write is retried while the store takes none (a full disk, a failover), or their task is being taken back here.",
	}, func() float64 { return float64(e.held.count()) })
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tasker_ready",
		Help: "1 while the coordinator passed its last readiness look (every second: a live lease, the store answering and taking writes), else 0; /healthz/ready and gRPC health say why.",
	}, func() float64 {
		if e.ready.Load() {
			return 1
		}
		return 0
	})
	executors := &executorCollector{pool: e.pool}
	waiting := &waitingCollector{e: e}
	for _, c := range []prometheus.Collector{m.tasksCreated, m.taskTransitions, m.stepTransitions, m.retries, m.stepDuration, m.dispatchLatency, m.storeWrite, m.fencedWrites, m.leaseLost, m.wakes, m.repairs, m.tasksPruned, m.results, m.streamMessages, m.admissionRefusals, active, keyWaits, held, ready, executors, waiting} {
		reg.MustRegister(c)
	}
	return m
}

// observeCommit counts the transitions of a committed change.
func (m *metrics) observeCommit(tr *taskRun, c *change, took time.Duration) {
	m.storeWrite.Observe(took.Seconds())
	ns, name := tr.task.Namespace, tr.task.Name
	if c.params.Task != nil {
		m.taskTransitions.WithLabelValues(ns, name, string(c.params.Task.To)).Inc()
	}
	for _, sc := range c.params.Steps {
		handler := tr.steps[tr.byID[sc.StepID]].Handler
		m.stepTransitions.WithLabelValues(ns, name, handler, string(sc.To)).Inc()
		if sc.To == "in_progress" && sc.Attempts > 1 {
			m.retries.WithLabelValues(handler).Inc()
		}
	}
}

// observeCreate counts a created task and the transitions stored with it
// (bypassed steps, the roots dispatched at once).
func (m *metrics) observeCreate(tr *taskRun, transitions []*store.Transition) {
	ns, name := tr.task.Namespace, tr.task.Name
	m.tasksCreated.WithLabelValues(ns, name).Inc()
	for _, t := range transitions {
		if t.StepID == "" {
			m.taskTransitions.WithLabelValues(ns, name, string(t.To)).Inc()
			continue
		}
		m.stepTransitions.WithLabelValues(ns, name, tr.steps[tr.byID[t.StepID]].Handler, string(t.To)).Inc()
	}
}

// executorCollector reports each executor's capacity and load at scrape
// time, so executors that went away disappear from the metrics.
type executorCollector struct{ pool *pool }

var (
	executorCapacityDesc = prometheus.NewDesc("tasker_executor_capacity", "Steps the executor runs at once.", []string{"executor"}, nil)
	executorInFlightDesc = prometheus.NewDesc("tasker_executor_in_flight", "Attempts running on the executor.", []string{"executor"}, nil)
	executorUpDesc       = prometheus.NewDesc("tasker_executor_connected", "1 while the executor's stream is up.", []string{"executor"}, nil)
)

func (c *executorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- executorCapacityDesc
	ch <- executorInFlightDesc
	ch <- executorUpDesc
}

func (c *executorCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.pool.list() {
		up := 0.0
		if e.GetConnected() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(executorCapacityDesc, prometheus.GaugeValue, float64(e.GetCapacity()), e.GetId())
		ch <- prometheus.MustNewConstMetric(executorInFlightDesc, prometheus.GaugeValue, float64(e.GetInFlight()), e.GetId())
		ch <- prometheus.MustNewConstMetric(executorUpDesc, prometheus.GaugeValue, up, e.GetId())
	}
}

// waitingCollector counts, at scrape time, the steps of the tasks running
// here by why they wait, so alerting sees a handler no executor hosts (or
// one short of capacity) as soon as steps queue for it. A scrape never
// waits for a task busy with a write (a slow store must not stall
// /metrics): such a task counts as it did at the previous scrape.
type waitingCollector struct{ e *engine }

var stepsWaitingDesc = prometheus.NewDesc("tasker_steps_waiting",
	"Steps of the tasks this coordinator runs that wait, by reason (parents, backoff, no_executor, capacity) and handler.",
	[]string{"reason", "handler"}, nil)

// waitCount is one series of tasker_steps_waiting.
type waitCount struct{ reason, handler string }

func (c *waitingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- stepsWaitingDesc }

func (c *waitingCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	e.mu.Lock()
	runs := make([]*taskRun, 0, len(e.tasks))
	for _, tr := range e.tasks {
		runs = append(runs, tr)
	}
	e.mu.Unlock()
	counts := map[waitCount]int{}
	now := e.now()
	for _, tr := range runs {
		if tr.mu.TryLock() {
			if !tr.done && !tr.broken {
				mine := map[waitCount]int{}
				for id, w := range e.waitingOf(tr, now) {
					mine[waitCount{w.reason, tr.steps[tr.byID[id]].Handler}]++
				}
				tr.waitCounts.Store(&mine)
			}
			tr.mu.Unlock()
		}
		if mine := tr.waitCounts.Load(); mine != nil {
			for k, n := range *mine {
				counts[k] += n
			}
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(stepsWaitingDesc, prometheus.GaugeValue, float64(n), k.reason, k.handler)
	}
}
