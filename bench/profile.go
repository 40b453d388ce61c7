package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// coordinatorProfileSlice is the length of one CPU profile taken from a
// coordinator's /debug/pprof/profile. That endpoint profiles for a number
// of seconds fixed up front, and a run's length is not known up front, so
// the window is covered by consecutive slices (merge them with
// `go tool pprof FILE...`); the last one runs past the window by less than
// a slice, while the coordinator is idle.
const coordinatorProfileSlice = 2 * time.Second

// profiler takes CPU profiles of every process of a run over the measured
// window and writes them to a directory: load-generator.pprof (bench
// itself, with its executors when they run in it), executor-N.pprof (one
// per executor process) and coordinator-N-SSS.pprof (coordinator N's
// slices).
type profiler struct {
	dir   string
	fleet fleet
	self  *os.File

	// mu guards written and errs.
	mu      sync.Mutex
	written []string
	errs    []error

	stopCoords chan struct{}
	wg         sync.WaitGroup
}

// startProfiles starts every profile; the caller must call stop.
func startProfiles(ctx context.Context, dir string, targets []*target, fl fleet, client *http.Client) (*profiler, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile directory: %w", err)
	}
	p := &profiler{dir: dir, fleet: fl, stopCoords: make(chan struct{})}
	self, err := os.Create(filepath.Join(dir, "load-generator.pprof"))
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := pprof.StartCPUProfile(self); err != nil {
		_ = self.Close()
		return nil, fmt.Errorf("profile the load generator: %w", err)
	}
	p.self = self
	if err := fl.startProfile(ctx); err != nil {
		_, stopErr := p.stop(ctx)
		return nil, errors.Join(fmt.Errorf("profile the executors: %w", err), stopErr)
	}
	for i, t := range targets {
		if t.PprofURL == "" {
			continue
		}
		p.wg.Go(func() { p.sliceCoordinator(ctx, client, i, t.PprofURL) })
	}
	return p, nil
}

// sliceCoordinator takes consecutive profiles of one coordinator until
// stopCoords is closed, finishing the slice under way.
func (p *profiler) sliceCoordinator(ctx context.Context, client *http.Client, i int, base string) {
	for n := 1; ; n++ {
		select {
		case <-p.stopCoords:
			return
		default:
		}
		name := filepath.Join(p.dir, fmt.Sprintf("coordinator-%d-%03d.pprof", i, n))
		if err := fetchProfile(ctx, client, base, name); err != nil {
			p.note("", fmt.Errorf("profile coordinator %d: %w", i, err))
			return
		}
		p.note(name, nil)
	}
}

func fetchProfile(ctx context.Context, client *http.Client, base, name string) error {
	url := fmt.Sprintf("%s/profile?seconds=%d", base, int(coordinatorProfileSlice/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// The client's own timeout may be shorter than a slice.
	c := *client
	c.Timeout = coordinatorProfileSlice + 30*time.Second
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s (does the coordinator serve --pprof?)", url, resp.Status)
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (p *profiler) note(name string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if name != "" {
		p.written = append(p.written, name)
	}
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// stop ends every profile, writes them and returns the files written.
// Profiles that failed are reported in the error; the others are kept.
func (p *profiler) stop(ctx context.Context) ([]string, error) {
	if p.self != nil {
		pprof.StopCPUProfile()
		name := p.self.Name()
		err := p.self.Close()
		p.self = nil
		p.note(name, err)
	}
	if profiles, err := p.fleet.stopProfile(ctx); err != nil {
		p.note("", fmt.Errorf("profile the executors: %w", err))
	} else {
		for i, data := range profiles {
			name := filepath.Join(p.dir, fmt.Sprintf("executor-%d.pprof", i))
			err := os.WriteFile(name, data, 0o644)
			if err != nil {
				name = ""
			}
			p.note(name, err)
		}
	}
	close(p.stopCoords)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.written, errors.Join(p.errs...)
}
