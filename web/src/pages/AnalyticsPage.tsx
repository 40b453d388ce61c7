import { useMemo, useState, type ReactNode } from 'react';
import { api } from '../api/client';
import type { Percentiles } from '../api/types';
import { ErrorNote, Mono, Section } from '../components/common';
import { useAsync } from '../hooks';
import { paths } from '../lib/routes';
import { formatProtoDuration, formatTime, fromLocalInput, parseTimestamp, toLocalInput, toRFC3339 } from '../lib/time';
import { Link, useRouter } from '../router';

const WINDOWS: [string, number][] = [
  ['15m', 15 * 60_000],
  ['1h', 3_600_000],
  ['24h', 24 * 3_600_000],
  ['7d', 7 * 24 * 3_600_000],
  ['30d', 30 * 24 * 3_600_000],
];

function pct(x: number | undefined): string {
  return `${((x ?? 0) * 100).toFixed(1)}%`;
}

/** perMinute keeps two significant digits of small rates, which would otherwise read as 0.00. */
function perMinute(x: number | undefined): string {
  const v = x ?? 0;
  if (v === 0) return '0';
  return v >= 10 ? v.toFixed(1) : v >= 0.01 ? v.toFixed(2) : v.toPrecision(2);
}

function int(s: string | undefined): string {
  return String(Number(s ?? 0));
}

function PercentileCells({ p }: { p?: Percentiles | null }) {
  return (
    <>
      <td className="num">{formatProtoDuration(p?.p50)}</td>
      <td className="num">{formatProtoDuration(p?.p95)}</td>
      <td className="num">{formatProtoDuration(p?.p99)}</td>
    </>
  );
}

function Stat({ label, value, metric, sub }: { label: string; value: string; metric: string; sub?: ReactNode }) {
  return (
    <div className="stat">
      <div className="stat-value" data-metric={metric}>
        {value}
      </div>
      <div className="stat-label">{label}</div>
      {sub && <div className="muted small">{sub}</div>}
    </div>
  );
}

export function AnalyticsPage({ namespace, name }: { namespace?: string; name?: string }) {
  const { search, navigate } = useRouter();
  const templates = useAsync((s) => api.listTemplates(undefined, s), []);
  const choices = useMemo(() => {
    const set = new Set<string>();
    for (const t of templates.data?.templates ?? []) set.add(`${t.namespace}/${t.name}`);
    return [...set].sort();
  }, [templates.data]);

  // The window: ?window=1h (ending now, the default 24h), or ?since=…&until=… (local time).
  const win = search.get('window') ?? (search.get('since') ? '' : '24h');
  const [now] = useState(() => Date.now());
  const preset = WINDOWS.find(([k]) => k === win);
  const since = preset ? now - preset[1] : fromLocalInput(search.get('since') ?? '');
  const until = preset ? undefined : fromLocalInput(search.get('until') ?? '');
  const [custom, setCustom] = useState({
    since: toLocalInput(since ?? now - 24 * 3_600_000),
    until: toLocalInput(until ?? now),
  });
  const [gen, setGen] = useState(0);
  const go = (q: Record<string, string>) => {
    const p = new URLSearchParams(q);
    navigate((namespace && name ? paths.analytics(namespace, name) : paths.analytics()) + `?${p}`, { replace: true });
    setGen((g) => g + 1);
  };

  const res = useAsync(
    async (s) => {
      if (!namespace || !name) return undefined;
      const end = until ?? Date.now();
      const start = preset ? end - preset[1] : since;
      return api.getAnalytics(
        namespace,
        name,
        { since: start !== undefined ? toRFC3339(start) : undefined, until: toRFC3339(end) },
        s,
      );
    },
    [namespace, name, search.toString(), gen],
  );
  const a = res.data?.analytics;
  const maxShare = Math.max(0.0001, ...(a?.steps ?? []).map((s) => s.criticalPathShare ?? 0));

  return (
    <div className="page">
      <div className="title-row">
        <h1>Analytics</h1>
        <select
          value={namespace && name ? `${namespace}/${name}` : ''}
          onChange={(e) => {
            const [ns, n] = e.target.value.split('/');
            navigate(paths.analytics(ns, n) + (search.toString() ? `?${search}` : ''));
          }}
          data-template-select
        >
          <option value="" disabled>
            pick a template
          </option>
          {choices.map((c) => (
            <option key={c}>{c}</option>
          ))}
        </select>
        <div className="window-buttons">
          {WINDOWS.map(([k]) => (
            <button key={k} className={win === k ? 'active' : ''} onClick={() => go({ window: k })}>
              last {k}
            </button>
          ))}
        </div>
        <form
          className="window-custom"
          onSubmit={(e) => {
            e.preventDefault();
            go({ since: custom.since, until: custom.until });
          }}
        >
          <input type="datetime-local" value={custom.since} onChange={(e) => setCustom({ ...custom, since: e.target.value })} />
          <span>to</span>
          <input type="datetime-local" value={custom.until} onChange={(e) => setCustom({ ...custom, until: e.target.value })} />
          <button type="submit" className={win === '' ? 'active' : ''}>
            Show
          </button>
        </form>
        <button onClick={() => setGen((g) => g + 1)} title="measure again up to now">
          ↻
        </button>
      </div>
      <ErrorNote error={templates.error} />
      <ErrorNote error={res.error} />
      {!namespace && <div className="muted">Pick a template to measure its finished tasks over a window.</div>}
      {a && (
        <div data-analytics={`${a.namespace}/${a.name}`}>
          <p className="muted">
            <Link to={paths.template(a.namespace ?? '', a.name ?? '')}>
              {a.namespace}/{a.name}
            </Link>
            {a.version ? `@${a.version}` : ' (all versions)'} · tasks that finished from {formatTime(parseTimestamp(a.since))} to{' '}
            {formatTime(parseTimestamp(a.until))}
          </p>
          <div className="stats">
            <Stat label="tasks finished" value={int(a.tasksFinished)} metric="tasks_finished" />
            <Stat label="throughput" value={`${perMinute(a.throughputPerMinute)}/min`} metric="throughput" />
            <Stat label="success rate" value={pct(a.successRate)} metric="success_rate" sub={<><span data-metric="completed">{int(a.completed)}</span> completed</>} />
            <Stat label="error rate" value={pct(a.errorRate)} metric="error_rate" sub={<><span data-metric="errored">{int(a.errored)}</span> errored</>} />
            <Stat label="cancel rate" value={pct(a.cancelRate)} metric="cancel_rate" sub={<><span data-metric="cancelled">{int(a.cancelled)}</span> cancelled · <span data-metric="resolved">{int(a.resolved)}</span> resolved</>} />
            <Stat label="retry rate" value={pct(a.retryRate)} metric="retry_rate" sub="attempts that were retries" />
            <Stat
              label="duration p50"
              value={formatProtoDuration(a.duration?.p50)}
              metric="duration_p50"
              sub={`creation to final state, ${int(a.duration?.count)} tasks`}
            />
            <Stat label="duration p95" value={formatProtoDuration(a.duration?.p95)} metric="duration_p95" />
            <Stat label="duration p99" value={formatProtoDuration(a.duration?.p99)} metric="duration_p99" />
            <Stat
              label="bottleneck step"
              value={a.bottleneckStep || '—'}
              metric="bottleneck"
              sub={a.bottleneckStep ? `${pct(a.bottleneckShare)} of the critical path` : 'no task completed'}
            />
          </div>
          <Section title="Steps">
            <table className="table compact analytics-steps">
              <thead>
                <tr>
                  <th rowSpan={2}>step</th>
                  <th rowSpan={2}>attempts</th>
                  <th rowSpan={2}>retries</th>
                  <th rowSpan={2}>failures</th>
                  <th colSpan={3}>running</th>
                  <th colSpan={3}>queue wait</th>
                  <th rowSpan={2}>share of critical path</th>
                </tr>
                <tr>
                  <th>p50</th>
                  <th>p95</th>
                  <th>p99</th>
                  <th>p50</th>
                  <th>p95</th>
                  <th>p99</th>
                </tr>
              </thead>
              <tbody>
                {(a.steps ?? []).map((s) => (
                  <tr key={s.name} data-step-row={s.name} className={s.name === a.bottleneckStep ? 'bottleneck' : undefined}>
                    <td>
                      {s.name}
                      {s.name === a.bottleneckStep && <span className="chip static small warn">bottleneck</span>}
                    </td>
                    <td className="num" data-col="attempts">{int(s.attempts)}</td>
                    <td className="num" data-col="retries">{int(s.retries)}</td>
                    <td className="num" data-col="failures">{int(s.failures)}</td>
                    <PercentileCells p={s.running} />
                    <PercentileCells p={s.queueWait} />
                    <td>
                      <div className="share">
                        <div style={{ width: `${((s.criticalPathShare ?? 0) / maxShare) * 100}%` }} />
                        <span>{pct(s.criticalPathShare)}</span>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Section>
          <Section title="Most common errors">
            {(a.topErrors ?? []).length === 0 ? (
              <div className="muted">no failed attempts in the window</div>
            ) : (
              <table className="table compact">
                <thead>
                  <tr>
                    <th>count</th>
                    <th>step</th>
                    <th>class</th>
                    <th>message</th>
                  </tr>
                </thead>
                <tbody>
                  {(a.topErrors ?? []).map((e, i) => (
                    <tr key={i} data-error-row={i}>
                      <td className="num">{int(e.count)}</td>
                      <td>{e.stepName}</td>
                      <td>
                        <Mono>{e.errorClass}</Mono>
                      </td>
                      <td className="reason">{e.message}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Section>
        </div>
      )}
    </div>
  );
}
