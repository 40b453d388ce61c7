import { memo } from 'react';
import { type Axis, type Segment, type StepTimeline, ticks } from '../lib/gantt';
import { stateColor, stateLabel } from '../lib/states';
import { formatDuration } from '../lib/time';

function segmentColor(s: Segment): string {
  if (s.kind === 'queued') return '#c9d3e0';
  if (s.kind === 'backoff') return '#f2a33a';
  return s.open ? stateColor('STATE_IN_PROGRESS') : stateColor(s.outcome);
}

function segmentTitle(name: string, s: Segment): string {
  const what =
    s.kind === 'running'
      ? `attempt ${s.attempt} running${s.outcome ? ` → ${stateLabel(s.outcome)}` : ' (still running)'}`
      : s.kind === 'queued'
        ? `attempt ${s.attempt} queued (ready, not yet dispatched)`
        : `backoff after attempt ${s.attempt}`;
  const lines = [`${name}: ${what}`, formatDuration(s.end - s.start) + (s.open ? ' so far' : '')];
  if (s.executor) lines.push(`executor ${s.executor}`);
  if (s.reason) lines.push(s.reason);
  return lines.join('\n');
}

const Row = memo(function Row({
  row, axis, critical, selected, onSelect,
}: {
  row: StepTimeline;
  axis: Axis;
  critical: boolean;
  selected: boolean;
  onSelect?: (name: string) => void;
}) {
  const span = axis.end - axis.start;
  return (
    <div
      className={`gantt-row${critical ? ' critical' : ''}${selected ? ' selected' : ''}`}
      onClick={() => onSelect?.(row.name)}
      data-gantt-step={row.name}
    >
      <div className="gantt-label" title={critical ? `${row.name} — on the critical path` : row.name}>
        {critical && <span className="crit-mark">◆</span>}
        {row.name}
      </div>
      <div className="gantt-track">
        {row.segments.map((s, i) => (
          <div
            key={i}
            className={`gantt-seg seg-${s.kind}${s.open ? ' open' : ''}`}
            data-kind={s.kind}
            style={{
              left: `${((s.start - axis.start) / span) * 100}%`,
              width: `max(2px, ${((s.end - s.start) / span) * 100}%)`,
              background: segmentColor(s),
            }}
            title={segmentTitle(row.name, s)}
          />
        ))}
      </div>
    </div>
  );
});

export interface GanttProps {
  rows: StepTimeline[];
  axis: Axis;
  critical: string[];
  selected?: string;
  onSelect?: (name: string) => void;
}

/** Gantt draws the waterfall: every attempt of every step on one time axis. */
export function Gantt({ rows, axis, critical, selected, onSelect }: GanttProps) {
  const crit = new Set(critical);
  const span = axis.end - axis.start;
  return (
    <div className="gantt">
      <div className="gantt-legend">
        <span><i style={{ background: '#c9d3e0' }} /> queued</span>
        <span><i style={{ background: stateColor('STATE_IN_PROGRESS') }} /> running</span>
        <span><i style={{ background: stateColor('STATE_COMPLETE') }} /> ran → complete</span>
        <span><i style={{ background: stateColor('STATE_ERROR') }} /> ran → error</span>
        <span><i style={{ background: '#f2a33a' }} /> backoff</span>
        <span><span className="crit-mark">◆</span> critical path</span>
        <span className="muted">axis: {formatDuration(span)} from creation</span>
      </div>
      <div className="gantt-axis">
        <div className="gantt-label" />
        <div className="gantt-track">
          {ticks(axis).map((t) => (
            <span key={t} className="tick" style={{ left: `${(t / span) * 100}%` }}>
              {t === 0 ? '0' : `+${formatDuration(t)}`}
            </span>
          ))}
        </div>
      </div>
      <div className="gantt-rows">
        {rows.map((r) => (
          <Row key={r.name} row={r} axis={axis} critical={crit.has(r.name)} selected={r.name === selected} onSelect={onSelect} />
        ))}
      </div>
    </div>
  );
}
