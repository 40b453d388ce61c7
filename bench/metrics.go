package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Metric names read from the coordinator's /metrics.
const (
	MetricCommits = "tasker_store_commits_total"
	MetricWrites  = "tasker_store_writes_total"
	MetricCPU     = "process_cpu_seconds_total"
	MetricRSS     = "process_resident_memory_bytes"
)

// Metrics is one scrape of a Prometheus text exposition: each metric name
// with the sum of its samples over all label sets. Summing is right for the
// unlabelled counters and gauges bench reads, and keeps the parser small.
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text format (version 0.0.4). Comment and
// blank lines are skipped; a sample line that cannot be read is an error,
// since a silently wrong number would end up in a report.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		name, value, err := parseSample(text)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", line, err)
		}
		m[name] += value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

// errBadSample is wrapped for sample lines ParseMetrics cannot read.
var errBadSample = errors.New("malformed sample")

// parseSample splits `name{labels} value [timestamp]`. Label values are
// quoted and may hold spaces, braces and escaped quotes, so the end of the
// label set is found by walking the quotes rather than by searching for '}'.
func parseSample(line string) (string, float64, error) {
	end := strings.IndexAny(line, "{ \t")
	if end <= 0 {
		return "", 0, fmt.Errorf("%w: %q", errBadSample, line)
	}
	name, rest := line[:end], line[end:]
	if rest[0] == '{' {
		closed := -1
		inQuote := false
		for i := 1; i < len(rest) && closed < 0; i++ {
			switch {
			case inQuote && rest[i] == '\\':
				i++
			case rest[i] == '"':
				inQuote = !inQuote
			case !inQuote && rest[i] == '}':
				closed = i
			}
		}
		if closed < 0 {
			return "", 0, fmt.Errorf("%w: unterminated labels in %q", errBadSample, line)
		}
		rest = rest[closed+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return "", 0, fmt.Errorf("%w: %q", errBadSample, line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", 0, fmt.Errorf("%w: value of %s: %w", errBadSample, name, err)
	}
	return name, v, nil
}

// Scrape fetches and parses url (a coordinator's /metrics).
func Scrape(ctx context.Context, client *http.Client, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %s", url, resp.Status)
	}
	m, err := ParseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return m, nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports; reading it would need
// sysconf and so cgo.
const clockTicks = 100

// ProcCPU returns the CPU time (user plus system) pid has used, from
// /proc/<pid>/stat.
func ProcCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu of %d: %w", pid, err)
	}
	ticks, err := parseProcStat(data)
	if err != nil {
		return 0, fmt.Errorf("read cpu of %d: %w", pid, err)
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseProcStat returns utime+stime in clock ticks. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseProcStat(data []byte) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	// After ')' come fields 3 (state) onwards; utime and stime are fields
	// 14 and 15.
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(fields))
	}
	utime, err := strconv.ParseUint(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime: %w", err)
	}
	return utime + stime, nil
}

// ProcPeakRSS returns the peak resident set size of pid in bytes (VmHWM in
// /proc/<pid>/status).
func ProcPeakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read peak rss of %d: %w", pid, err)
	}
	n, err := parseVmHWM(data)
	if err != nil {
		return 0, fmt.Errorf("read peak rss of %d: %w", pid, err)
	}
	return n, nil
}

// parseVmHWM reads the "VmHWM:   1234 kB" line of a status file.
func parseVmHWM(data []byte) (int64, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("status: malformed VmHWM line %q", line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status VmHWM: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("status: no VmHWM line")
}
