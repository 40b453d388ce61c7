import { useCallback, useState } from 'react';
import type { EventKind, TaskEvent } from '../api/types';
import { LiveDot, Mono } from '../components/common';
import { useEventStream } from '../hooks';
import { paths } from '../lib/routes';
import { stateLabel } from '../lib/states';
import { formatTime, parseTimestamp } from '../lib/time';
import { Link, useRouter } from '../router';

/** KEEP is how many events the page holds; older ones drop off the end. */
const KEEP = 500;

/**
 * EventsPage follows the event stream: every transition the coordinators
 * commit, newest first, from the moment the page opened.
 */
export function EventsPage() {
  const { search, navigate } = useRouter();
  const namespace = search.get('namespace') ?? '';
  const kind = (search.get('kind') ?? '') as '' | 'task' | 'step';
  const [events, setEvents] = useState<TaskEvent[]>([]);
  const [paused, setPaused] = useState(false);
  const [held, setHeld] = useState<TaskEvent[]>([]);
  const onEvent = useCallback(
    (e: TaskEvent) => {
      if (paused) setHeld((h) => [e, ...h].slice(0, KEEP));
      else setEvents((es) => [e, ...es].slice(0, KEEP));
    },
    [paused],
  );
  const kinds: EventKind[] | undefined =
    kind === 'task' ? ['EVENT_KIND_TASK'] : kind === 'step' ? ['EVENT_KIND_STEP'] : undefined;
  // A break the log could not bridge (events older than its retention,
  // or a restore): the list goes on from then, and says when.
  const [gapAt, setGapAt] = useState<number>();
  const live = useEventStream({ namespace: namespace || undefined, kinds }, onEvent, () => setGapAt(Date.now()));
  const setFilter = (k: string, v: string) => {
    const q = new URLSearchParams(search);
    if (v) q.set(k, v);
    else q.delete(k);
    setEvents([]);
    setHeld([]);
    navigate(`/events${q.toString() ? `?${q}` : ''}`, { replace: true });
  };
  const resume = () => {
    setEvents((es) => [...held, ...es].slice(0, KEEP));
    setHeld([]);
    setPaused(false);
  };
  return (
    <div className="page">
      <div className="title-row">
        <h1>Events</h1>
        <LiveDot status={live} />
        <span className="muted">every transition as it is committed, newest first, since this page opened</span>
        <div className="spacer" />
        {paused ? (
          <button className="primary" data-action="resume-feed" onClick={resume}>
            Resume ({held.length} new)
          </button>
        ) : (
          <button data-action="pause-feed" onClick={() => setPaused(true)} title="hold new events back while you read">
            Pause
          </button>
        )}
      </div>
      {gapAt !== undefined && (
        <div className="note warn" data-event-gap>
          Events from before {formatTime(gapAt)} are missing here: the coordinator no longer keeps them (event retention, or a
          restore), so the list went on from then.
        </div>
      )}
      <div className="filters">
        <label>
          Namespace
          <input
            name="namespace"
            defaultValue={namespace}
            placeholder="any"
            onKeyDown={(e) => e.key === 'Enter' && setFilter('namespace', e.currentTarget.value.trim())}
            onBlur={(e) => e.currentTarget.value.trim() !== namespace && setFilter('namespace', e.currentTarget.value.trim())}
          />
        </label>
        <label>
          Kind
          <select name="kind" value={kind} onChange={(e) => setFilter('kind', e.target.value)}>
            <option value="">tasks and steps</option>
            <option value="task">tasks</option>
            <option value="step">steps</option>
          </select>
        </label>
      </div>
      <table className="table compact events">
        <thead>
          <tr>
            <th>#</th>
            <th>at</th>
            <th>template</th>
            <th>task</th>
            <th>step</th>
            <th>transition</th>
            <th>reason</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => {
            const t = e.transition ?? {};
            return (
              <tr key={e.cursor} data-event={e.cursor} data-task={t.taskId} data-step={t.stepName ?? ''}>
                <td className="num muted">{e.cursor}</td>
                <td className="nowrap">{formatTime(parseTimestamp(t.at))}</td>
                <td>
                  {e.namespace}/{e.name}
                </td>
                <td>
                  <Link to={paths.task(t.taskId ?? '', t.stepName || undefined)}>
                    <Mono>{t.taskId}</Mono>
                  </Link>
                </td>
                <td>{t.stepName || <span className="muted">task</span>}</td>
                <td className="nowrap" data-col="transition">
                  {t.fromState && t.fromState !== 'STATE_UNSPECIFIED' ? stateLabel(t.fromState) : '·'} → {stateLabel(t.toState)}
                </td>
                <td className="reason">{t.reason}</td>
              </tr>
            );
          })}
          {events.length === 0 && (
            <tr>
              <td colSpan={7} className="muted">
                No transitions yet. They show here as tasks run.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
