import { api } from '../api/client';
import { ErrorNote, Mono } from '../components/common';
import { useAsync, useInterval, useNow } from '../hooks';
import { formatAgo, formatTime, parseTimestamp } from '../lib/time';

export function ExecutorsPage() {
  const list = useAsync((s) => api.listExecutors(s), []);
  useInterval(list.reload, 3000);
  const now = useNow(1000);
  const executors = [...(list.data?.executors ?? [])].sort(
    (a, b) => Number(!!b.connected) - Number(!!a.connected) || (a.id ?? '').localeCompare(b.id ?? ''),
  );
  const unhosted = list.data?.unhosted ?? [];
  return (
    <div className="page">
      <div className="title-row">
        <h1>Executors</h1>
        <span className="muted">reloads every 3 s</span>
      </div>
      <ErrorNote error={list.error} />
      {unhosted.length > 0 && (
        <div className="note warn" data-unhosted>
          <strong>Handlers no connected executor hosts.</strong> Steps that use them wait until an executor hosting them connects.
          <ul>
            {unhosted.map((u) => (
              <li key={u.handler}>
                <Mono>{u.handler}</Mono> — used by {(u.templates ?? []).join(', ') || 'a template'}
              </li>
            ))}
          </ul>
        </div>
      )}
      <table className="table executors">
        <thead>
          <tr>
            <th>executor</th>
            <th>status</th>
            <th>handlers</th>
            <th>in flight / capacity</th>
            <th>last heard</th>
            <th>connected since</th>
            <th>coordinators it serves</th>
          </tr>
        </thead>
        <tbody>
          {executors.map((e) => {
            const cap = e.capacity ?? 0;
            const inFlight = e.inFlight ?? 0;
            const heard = parseTimestamp(e.lastHeard);
            return (
              <tr key={e.id} data-executor={e.id} className={e.connected ? undefined : 'dim'}>
                <td>
                  <Mono>{e.id}</Mono>
                  <div className="muted small">
                    {e.address}
                    {e.language ? ` · ${e.language}` : ''}
                  </div>
                </td>
                <td>{e.connected ? <span className="ok">connected</span> : <span className="bad">disconnected</span>}</td>
                <td>
                  {(e.handlers ?? []).map((h) => (
                    <span key={h} className="chip static">
                      {h}
                    </span>
                  ))}
                </td>
                <td>
                  <div className="meter" title={`${inFlight} of ${cap} slots busy`}>
                    <div style={{ width: `${cap ? Math.min(100, (inFlight / cap) * 100) : 0}%` }} />
                  </div>
                  <span className="num">
                    {inFlight} / {cap}
                  </span>
                </td>
                <td title={formatTime(heard)}>{formatAgo(heard, now)}</td>
                <td>{formatTime(parseTimestamp(e.connectedAt))}</td>
                <td>
                  {(e.coordinators ?? []).length ? (
                    (e.coordinators ?? []).map((c) => (
                      <div key={c}>
                        <Mono>{c}</Mono>
                      </div>
                    ))
                  ) : (
                    <span className="muted">not reported</span>
                  )}
                </td>
              </tr>
            );
          })}
          {list.data && executors.length === 0 && (
            <tr>
              <td colSpan={7} className="muted">
                No executor has registered with this coordinator.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
