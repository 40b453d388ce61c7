// Saying in words what a template's step does and what holds it, for the
// template page: a handler, or one of the things the coordinator runs
// itself (a wait, a sleep, a child task), and the flow control around it.

import type { StepTemplate } from '../api/types';
import { formatProtoDuration } from './time';

/** stepRuns says what the step runs: its handler, or what it waits for instead. */
export function stepRuns(s: StepTemplate): string {
  if (s.waitFor?.signal) {
    const timeout = s.waitFor.timeout ? `, timeout ${formatProtoDuration(s.waitFor.timeout)}` : '';
    return `waits for signal "${s.waitFor.signal}"${timeout}`;
  }
  if (s.sleep) return `sleeps ${formatProtoDuration(s.sleep)}`;
  if (s.until) return `waits until ${s.until}`;
  if (s.task) {
    const fields = Object.keys(s.taskContext ?? {}).sort();
    return `child task ${s.task}${fields.length ? ` (context: ${fields.join(', ')})` : ''}`;
  }
  return s.handler ? `handler ${s.handler}` : '—';
}

/** stepTraits lists what else shapes the step's run: fan-out, a decision, keys and limits. */
export function stepTraits(s: StepTemplate): string[] {
  const out: string[] = [];
  if (s.forEach) out.push(`for each item of ${s.forEach}`);
  if (s.decision) out.push('decision: its result picks the children that run');
  for (const c of s.concurrency ?? []) {
    out.push(`at most ${c.maxRunning ?? 1} running per ${c.key ?? '?'}${c.strategy && c.strategy !== 'queue' ? ` (${c.strategy})` : ''}`);
  }
  for (const r of s.rateLimits ?? []) {
    const units = (r.units ?? 1) === 1 ? '' : `${r.units} units of `;
    out.push(`rate limit ${units}${r.name ?? '?'}${r.key ? ` per ${r.key}` : ''}`);
  }
  return out;
}
