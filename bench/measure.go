package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress prints a line every interval until the returned func is called.
// It also scrapes the resident memory of every coordinator whose /proc
// bench cannot read, so the report has a peak.
func (r *runner) progress(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, tg := range r.targets {
				if tg.PID == 0 && tg.MetricsURL != "" {
					if m, err := Scrape(ctx, r.cfg.HTTPClient, tg.MetricsURL); err == nil {
						tg.notePeakRSS(m)
					}
				}
			}
			if r.cfg.Progress != nil {
				_, steps, _ := r.fleet.counts(ctx, false)
				_, _ = io.WriteString(r.cfg.Progress, progressLine(time.Since(r.start), r.done.Load(), int64(r.cfg.Tasks), steps, r.inFlight.Load()))
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

func (t *target) notePeakRSS(m Metrics) {
	v, ok := m[MetricRSS]
	if !ok {
		return
	}
	for {
		cur := t.peakRSS.Load()
		if int64(v) <= cur || t.peakRSS.CompareAndSwap(cur, int64(v)) {
			return
		}
	}
}

// snapshot is what one coordinator's counters said at one moment; a nil
// metrics or a false cpuOK means that source was unavailable.
type snapshot struct {
	metrics Metrics
	cpu     time.Duration
	cpuOK   bool
}

// window is what every process's counters said at one moment.
type window struct {
	// coordinators are in the order of r.targets.
	coordinators []snapshot
	// executors is the CPU of the executor processes, summed; not ok when
	// they run in the load generator's process.
	executors, loadGenerator time.Duration
	executorsOK, loadOK      bool
}

// measure reads every process's counters. Failures leave figures out of
// the report (logged) rather than failing a run that otherwise worked.
func (r *runner) measure(ctx context.Context) window {
	w := window{coordinators: make([]snapshot, len(r.targets))}
	for i, t := range r.targets {
		w.coordinators[i] = r.measureOne(ctx, t)
	}
	if pids := r.fleet.pids(); pids != nil {
		w.executorsOK = true
		for _, pid := range pids {
			cpu, err := ProcCPU(pid)
			if err != nil {
				r.cfg.Logger.Warn("executor cpu unavailable", "pid", pid, "err", err)
				w.executorsOK = false
				break
			}
			w.executors += cpu
		}
	}
	cpu, err := ProcCPU(os.Getpid())
	if err != nil {
		r.cfg.Logger.Warn("load generator cpu unavailable", "err", err)
	} else {
		w.loadGenerator, w.loadOK = cpu, true
	}
	return w
}

func (r *runner) measureOne(ctx context.Context, t *target) snapshot {
	var s snapshot
	if t.MetricsURL != "" {
		m, err := Scrape(ctx, r.cfg.HTTPClient, t.MetricsURL)
		if err != nil {
			r.cfg.Logger.Warn("metrics unavailable", "coordinator", t.Addr, "err", err)
		} else {
			s.metrics = m
			t.notePeakRSS(m)
		}
	}
	if t.PID != 0 {
		cpu, err := ProcCPU(t.PID)
		if err != nil {
			r.cfg.Logger.Warn("process cpu unavailable", "coordinator", t.Addr, "err", err)
		} else {
			s.cpu, s.cpuOK = cpu, true
		}
	} else if v, ok := s.metrics[MetricCPU]; ok {
		s.cpu, s.cpuOK = time.Duration(v*float64(time.Second)), true
	}
	return s
}

// usage is what one coordinator spent during the run; a false ok means it
// could not be measured.
type usage struct {
	commits, writes float64
	storeOK         bool
	cpu             time.Duration
	cpuOK           bool
	peakRSS         int64
	peakOK          bool
}

// usage compares t's snapshots from before and after the load.
func (r *runner) usage(t *target, before, after snapshot) usage {
	var u usage
	if before.metrics != nil && after.metrics != nil {
		u.commits = after.metrics[MetricCommits] - before.metrics[MetricCommits]
		u.writes = after.metrics[MetricWrites] - before.metrics[MetricWrites]
		u.storeOK = true
	}
	if before.cpuOK && after.cpuOK {
		u.cpu, u.cpuOK = after.cpu-before.cpu, true
	}
	if t.PID != 0 {
		if peak, err := ProcPeakRSS(t.PID); err == nil {
			u.peakRSS, u.peakOK = peak, true
		} else {
			r.cfg.Logger.Warn("peak rss unavailable", "coordinator", t.Addr, "err", err)
		}
	} else if peak := t.peakRSS.Load(); peak > 0 {
		u.peakRSS, u.peakOK = peak, true
	}
	return u
}

// report turns the raw counts into the figures of a Report. Store and CPU
// figures of several coordinators are given only when every one of them
// was measured: a sum over some would read as the cluster's.
func (r *runner) report(ctx context.Context, elapsed time.Duration, before, after window, overheads []time.Duration) (*Report, error) {
	invocations, steps, err := r.fleet.counts(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("read the executors' counts: %w", err)
	}
	secs := elapsed.Seconds()
	rep := &Report{
		Shape: r.cfg.Shape, Store: r.cfg.Store, Schema: r.cfg.Schema, Sync: r.cfg.Sync,
		Tasks: r.done.Load(), TasksFailed: r.failed.Load(), Steps: steps,
		DurationSec: round3(secs), Concurrency: r.cfg.Concurrency, Executors: r.cfg.Executors,
		Coordinators:        len(r.targets),
		DuplicateDispatches: invocations - steps,
		StaleWatchStates:    r.staleWatchStates.Load(),
		DispatchSamples:     len(overheads),
	}
	if secs > 0 {
		rep.TasksPerSec = round3(float64(rep.Tasks) / secs)
		rep.StepsPerSec = round3(float64(steps) / secs)
	}
	r.mu.Lock()
	rep.TaskLatencyMS = summarizeLatency(r.latencies)
	r.mu.Unlock()
	rep.DispatchOverheadMS = summarizeOverhead(overheads)

	total := usage{storeOK: true, cpuOK: true, peakOK: true}
	for i, t := range r.targets {
		u := r.usage(t, before.coordinators[i], after.coordinators[i])
		total.commits += u.commits
		total.writes += u.writes
		total.storeOK = total.storeOK && u.storeOK
		total.cpu += u.cpu
		total.cpuOK = total.cpuOK && u.cpuOK
		total.peakRSS = max(total.peakRSS, u.peakRSS)
		total.peakOK = total.peakOK && u.peakOK
		if len(r.targets) > 1 {
			rep.PerCoordinator = append(rep.PerCoordinator, coordinatorFigures(t, u, secs))
		}
	}
	if total.storeOK {
		if secs > 0 {
			rep.CommitsPerSec = ptr(round3(total.commits / secs))
		}
		if total.commits > 0 {
			rep.MeanBatchSize = ptr(round3(total.writes / total.commits))
		}
	}
	per1k := func(d time.Duration) *float64 {
		if steps == 0 {
			return nil
		}
		return ptr(round3(d.Seconds() / float64(steps) * 1000))
	}
	rep.ExecutorsInProcess = r.fleet.pids() == nil
	if total.cpuOK {
		rep.CPUSecondsPer1kSteps = per1k(total.cpu)
		rep.CPUPer1kSteps.Coordinator = rep.CPUSecondsPer1kSteps
	}
	if before.executorsOK && after.executorsOK {
		rep.CPUPer1kSteps.Executors = per1k(after.executors - before.executors)
	}
	if before.loadOK && after.loadOK {
		rep.CPUPer1kSteps.LoadGenerator = per1k(after.loadGenerator - before.loadGenerator)
	}
	if total.peakOK {
		rep.PeakRSSMB = ptr(round3(float64(total.peakRSS) / (1 << 20)))
	}
	return rep, nil
}

// coordinatorFigures is one coordinator's share of the report.
func coordinatorFigures(t *target, u usage, secs float64) CoordinatorFigures {
	f := CoordinatorFigures{Addr: t.Addr, TasksCreated: t.created.Load()}
	if u.storeOK {
		if secs > 0 {
			f.CommitsPerSec = ptr(round3(u.commits / secs))
		}
		if u.commits > 0 {
			f.MeanBatchSize = ptr(round3(u.writes / u.commits))
		}
	}
	if u.cpuOK {
		f.CPUSeconds = ptr(round3(u.cpu.Seconds()))
	}
	if u.peakOK {
		f.PeakRSSMB = ptr(round3(float64(u.peakRSS) / (1 << 20)))
	}
	return f
}

func ptr[T any](v T) *T { return &v }
