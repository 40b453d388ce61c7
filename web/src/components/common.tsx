import { useState, type ReactNode } from 'react';
import { errorMessage } from '../api/client';
import type { State } from '../api/types';
import { stateColor, stateLabel, stateTextColor } from '../lib/states';

export function StateBadge({ state }: { state?: State }) {
  return (
    <span className="badge" data-state={state} style={{ background: stateColor(state), color: stateTextColor(state) }}>
      {stateLabel(state)}
    </span>
  );
}

export function ErrorNote({ error, prefix }: { error: unknown; prefix?: string }) {
  if (!error) return null;
  return (
    <div className="note error" role="alert">
      {prefix ? `${prefix}: ` : ''}
      {errorMessage(error)}
    </div>
  );
}

/** JsonView shows a value as indented JSON; very large values are cut until asked for. */
export function JsonView({ value, limit = 20000 }: { value: unknown; limit?: number }) {
  const [all, setAll] = useState(false);
  if (value === undefined) return <div className="muted">none</div>;
  const text = JSON.stringify(value, null, 2) ?? 'null';
  const cut = !all && text.length > limit;
  return (
    <div>
      <pre className="json">{cut ? text.slice(0, limit) + '\n…' : text}</pre>
      {cut && (
        <button className="link" onClick={() => setAll(true)}>
          show all {Math.round(text.length / 1024)} KiB
        </button>
      )}
    </div>
  );
}

export function Section({ title, children, right, id }: { title: ReactNode; children: ReactNode; right?: ReactNode; id?: string }) {
  return (
    <section className="panel" id={id}>
      <header className="panel-head">
        <h2>{title}</h2>
        {right}
      </header>
      {children}
    </section>
  );
}

export function Mono({ children, title }: { children: ReactNode; title?: string }) {
  return (
    <code className="mono" title={title}>
      {children}
    </code>
  );
}

export function LiveDot({ status }: { status: 'connecting' | 'live' | 'polling' }) {
  const text = status === 'live' ? 'live' : status === 'polling' ? 'polling' : 'watching';
  const title =
    status === 'live'
      ? 'updates arrive as they happen, over the event stream'
      : status === 'polling'
        ? 'the event stream is not available: reloading every few seconds'
        : 'the stream is open; updates show as they happen';
  return (
    <span className={`live live-${status}`} title={title}>
      ● {text}
    </span>
  );
}
