import { api } from '../api/client';
import { ErrorNote, Mono } from '../components/common';
import { useAsync, useInterval } from '../hooks';
import { formatRate } from '../lib/ratelimit';
import { formatTime, parseTimestamp } from '../lib/time';

/** LimitsPage lists the rate limits steps draw on. */
export function LimitsPage() {
  const list = useAsync((s) => api.listRateLimits(s), []);
  useInterval(list.reload, 5000);
  const limits = list.data?.rateLimits ?? [];
  return (
    <div className="page">
      <div className="title-row">
        <h1>Rate limits</h1>
        <span className="muted">reloads every 5 s</span>
      </div>
      <p className="muted">
        Token buckets that steps draw on as they are dispatched (a template's <code>rate_limits:</code>). A step that finds too
        few tokens waits with the reason <em>rate_limit</em>, shown on its task&apos;s page. Set them with{' '}
        <code>tasker limit set NAME --rate 100/s</code> or <code>PUT /api/v1/rate-limits/NAME</code>.
      </p>
      <ErrorNote error={list.error} />
      <table className="table limits">
        <thead>
          <tr>
            <th>limit</th>
            <th>rate</th>
            <th>burst</th>
            <th>set</th>
            <th>changed</th>
          </tr>
        </thead>
        <tbody>
          {limits.map((l) => (
            <tr key={l.name} data-limit={l.name}>
              <td>
                <Mono>{l.name}</Mono>
              </td>
              <td data-col="rate">{formatRate(l)}</td>
              <td data-col="burst" className="num">
                {l.burst ?? '?'}
              </td>
              <td>{formatTime(parseTimestamp(l.createdAt))}</td>
              <td>{formatTime(parseTimestamp(l.updatedAt))}</td>
            </tr>
          ))}
          {list.data && limits.length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                No rate limits.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
