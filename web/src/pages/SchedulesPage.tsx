import { useState } from 'react';
import { api } from '../api/client';
import type { Schedule, ScheduleRun } from '../api/types';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorNote, JsonView, Mono, Section, StateBadge } from '../components/common';
import { useAccess } from '../access';
import { useAsync, useInterval, useNow } from '../hooks';
import { paths } from '../lib/routes';
import { formatIn, formatProtoDuration, formatTime, parseTimestamp } from '../lib/time';
import { Link } from '../router';

/** SchedulesPage lists the schedules, or shows one of them. */
export function SchedulesPage({ name }: { name?: string }) {
  return name === undefined ? <ScheduleList /> : <ScheduleDetail key={name} name={name} />;
}

function templateLabel(s: Schedule): string {
  return `${s.namespace}/${s.template}@${s.version || 'highest'}`;
}

function Status({ s }: { s: Schedule }) {
  return s.paused ? (
    <span className="badge paused" data-schedule-status="paused">
      paused
    </span>
  ) : (
    <span className="badge active" data-schedule-status="active">
      active
    </span>
  );
}

function ScheduleList() {
  const list = useAsync((sig) => api.listSchedules(sig), []);
  useInterval(list.reload, 5000);
  const now = useNow(1000);
  const schedules = list.data?.schedules ?? [];
  return (
    <div className="page">
      <div className="title-row">
        <h1>Schedules</h1>
        <span className="muted">reloads every 5 s</span>
      </div>
      <ErrorNote error={list.error} />
      <table className="table schedules">
        <thead>
          <tr>
            <th>schedule</th>
            <th>template</th>
            <th>cron</th>
            <th>overlap</th>
            <th>status</th>
            <th>next fire time</th>
          </tr>
        </thead>
        <tbody>
          {schedules.map((s) => {
            const next = parseTimestamp(s.nextFireTime);
            return (
              <tr key={s.name} data-schedule={s.name} className={s.paused ? 'dim' : undefined}>
                <td>
                  <Link to={paths.schedule(s.name)}>{s.name}</Link>
                </td>
                <td>
                  <Link to={paths.template(s.namespace ?? '', s.template ?? '', s.version || undefined)}>{templateLabel(s)}</Link>
                </td>
                <td>
                  <Mono>{s.cron}</Mono> <span className="muted">{s.timezone || 'UTC'}</span>
                </td>
                <td>{s.overlap || 'skip'}</td>
                <td>
                  <Status s={s} />
                </td>
                <td title={formatTime(next)}>
                  {s.paused ? <span className="muted">paused</span> : `${formatTime(next)} (${formatIn(next, now)})`}
                </td>
              </tr>
            );
          })}
          {list.data && schedules.length === 0 && (
            <tr>
              <td colSpan={6} className="muted">
                No schedules. Create one with <code>tasker schedule create</code> or <code>POST /api/v1/schedules</code>.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

function ScheduleDetail({ name }: { name: string }) {
  const access = useAccess();
  const got = useAsync((sig) => api.getSchedule(name, { next: 10, runs: 50 }, sig), [name]);
  useInterval(got.reload, 5000);
  const now = useNow(1000);
  const [confirm, setConfirm] = useState<'pause' | 'resume'>();
  const s = got.data?.schedule;
  if (!s) {
    return (
      <div className="page">
        <h1>
          Schedule <Mono>{name}</Mono>
        </h1>
        <ErrorNote error={got.error} />
        {!got.error && <div className="muted">loading…</div>}
      </div>
    );
  }
  const next = got.data?.nextFireTimes ?? [];
  const runs = got.data?.runs ?? [];
  const buffered = parseTimestamp(s.bufferedFireTime);
  return (
    <div className="page schedule-page" data-schedule-page={s.name}>
      <div className="title-row">
        <h1>
          Schedule <Mono>{s.name}</Mono>
        </h1>
        <Status s={s} />
        <div className="spacer" />
        <div className="actions">
          {s.paused ? (
            <button
              className="primary"
              data-action="resume"
              disabled={!!access.refusal}
              title={access.refusal ?? 'fire again from now on'}
              onClick={() => setConfirm('resume')}
            >
              Resume
            </button>
          ) : (
            <button
              data-action="pause"
              disabled={!!access.refusal}
              title={access.refusal ?? 'stop firing until resumed'}
              onClick={() => setConfirm('pause')}
            >
              Pause
            </button>
          )}
        </div>
      </div>
      <ErrorNote error={got.error} prefix="Reloading failed" />
      {access.refusal && <div className="note warn">This token can look but not act: {access.refusal}</div>}
      <div className="task-grid">
        <div className="task-main">
          <Section title={`Latest runs (${runs.length})`} right={<span className="muted">latest fire time first</span>}>
            <RunsTable runs={runs} />
          </Section>
        </div>
        <aside className="task-side">
          <div className="panel">
            <dl className="kv">
              <dt>template</dt>
              <dd>
                <Link to={paths.template(s.namespace ?? '', s.template ?? '', s.version || undefined)}>{templateLabel(s)}</Link>
              </dd>
              <dt>cron</dt>
              <dd>
                <Mono>{s.cron}</Mono> in {s.timezone || 'UTC'}
              </dd>
              <dt>overlap</dt>
              <dd>{s.overlap || 'skip'}</dd>
              <dt>catch-up window</dt>
              <dd>{s.catchupWindow ? formatProtoDuration(s.catchupWindow) : '1 h (default)'}</dd>
              {buffered !== undefined && (
                <>
                  <dt>buffered</dt>
                  <dd>a firing of {formatTime(buffered)} waits for the previous task</dd>
                </>
              )}
              <dt>created</dt>
              <dd>{formatTime(parseTimestamp(s.createTime))}</dd>
              <dt>changed</dt>
              <dd>{formatTime(parseTimestamp(s.updateTime))}</dd>
            </dl>
            <h3>{s.paused ? 'Fire times after a resume now' : 'Next fire times'}</h3>
            <ol className="fire-times" data-next-fire-times>
              {next.map((t) => {
                const ms = parseTimestamp(t);
                return (
                  <li key={t}>
                    {formatTime(ms)} <span className="muted">{formatIn(ms, now)}</span>
                  </li>
                );
              })}
            </ol>
            <details className="task-context">
              <summary>Context of its tasks</summary>
              <JsonView value={s.context ?? {}} />
            </details>
            <div className="muted small ids">
              schedule id <Mono>{s.id}</Mono>
            </div>
          </div>
        </aside>
      </div>
      {confirm === 'pause' && (
        <ConfirmDialog
          title={`Pause schedule ${s.name}?`}
          body={<p>It stops firing. Its tasks already created go on; fire times that pass while it is paused are skipped.</p>}
          confirmLabel="Pause"
          onConfirm={async () => {
            await api.pauseSchedule(s.name);
            got.reload();
          }}
          onClose={() => setConfirm(undefined)}
        />
      )}
      {confirm === 'resume' && (
        <ConfirmDialog
          title={`Resume schedule ${s.name}?`}
          body={<p>It fires again from now on: fire times missed while it was paused are skipped and counted, not run late.</p>}
          confirmLabel="Resume"
          onConfirm={async () => {
            await api.resumeSchedule(s.name);
            got.reload();
          }}
          onClose={() => setConfirm(undefined)}
        />
      )}
    </div>
  );
}

function RunsTable({ runs }: { runs: ScheduleRun[] }) {
  if (runs.length === 0) return <div className="muted">no firing yet</div>;
  return (
    <table className="table compact runs">
      <thead>
        <tr>
          <th>fire time</th>
          <th>outcome</th>
          <th>task state</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r, i) => {
          const count = Number(r.count ?? 0);
          return (
            <tr key={`${r.fireTime}-${i}`} data-run={r.taskId ? 'task' : 'skipped'} className={r.taskId ? undefined : 'dim'}>
              <td className="nowrap">{formatTime(parseTimestamp(r.fireTime))}</td>
              <td>
                {r.taskId ? (
                  r.taskPruned ? (
                    <Mono>{r.taskId}</Mono>
                  ) : (
                    <Link to={paths.task(r.taskId)}>
                      <Mono>{r.taskId}</Mono>
                    </Link>
                  )
                ) : (
                  <span>
                    skipped: {r.skipped}
                    {count > 1 && (
                      <span className="muted">
                        {' '}
                        ({count} fire times, to {formatTime(parseTimestamp(r.lastFireTime))})
                      </span>
                    )}
                  </span>
                )}
              </td>
              <td data-run-state={r.taskPruned ? 'pruned' : (r.taskState ?? '')}>
                {r.taskPruned ? (
                  <span className="muted" title="retention deleted the task; the run's record stays">
                    pruned
                  </span>
                ) : r.taskState ? (
                  <StateBadge state={r.taskState} />
                ) : null}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
