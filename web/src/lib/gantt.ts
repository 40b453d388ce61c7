// The waterfall of a task: every attempt of every step on one time axis,
// computed from the steps' stored transitions alone.
//
// A step's attempt goes through three kinds of time:
//   queued   from becoming ready (the task created, its last parent done,
//            or its retry due) to being dispatched;
//   running  from dispatch to its result;
//   backoff  from a failed attempt to its retry becoming due.
// The coordinator records error→pending only when it dispatches the retry,
// so the due time comes from the failure's reason ("retrying in 10ms"), or
// from metadata.retry_at when the coordinator puts it there.

import type { State, Transition } from '../api/types';
import { isDone, isTerminal } from './states';
import { parseGoDuration, parseTimestamp } from './time';

export type SegmentKind = 'queued' | 'running' | 'backoff';

/** Segment is one stretch of time of one attempt, in epoch milliseconds. */
export interface Segment {
  kind: SegmentKind;
  attempt: number;
  start: number;
  end: number;
  /** open is true while the stretch is still going on (its end is now). */
  open: boolean;
  /** outcome of a running segment that ended: the state it went to. */
  outcome?: State;
  executor?: string;
  /** reason of the transition that ended the segment. */
  reason?: string;
}

/** Attempt is what one attempt of a step did. */
export interface Attempt {
  attempt: number;
  executor?: string;
  readyAt?: number;
  dispatchedAt?: number;
  endedAt?: number;
  outcome?: State;
  /** reason of the transition that ended the attempt. */
  reason?: string;
  errorMessage?: string;
  errorClass?: string;
  /** retryDueAt is when a failed attempt's retry became (or becomes) due. */
  retryDueAt?: number;
}

/** StepTimeline is one row of the waterfall. */
export interface StepTimeline {
  name: string;
  /** index of the step in template order. */
  index: number;
  segments: Segment[];
  attempts: Attempt[];
  /** doneAt is when the step last became complete or resolved_manually. */
  doneAt?: number;
}

/** TimelineStep is what the waterfall needs of a step. */
export interface TimelineStep {
  name: string;
  dependsOn?: string[];
  state?: State;
  transitions?: Transition[];
  nextRetryAt?: string | null;
  error?: { message?: string; errorClass?: string } | null;
  attempts?: number;
}

export interface TimelineTask {
  createdAt?: string;
  state?: State;
  steps?: TimelineStep[];
}

function seqOf(t: Transition): number {
  return t.seq ? Number(t.seq) : 0;
}

/** sortTransitions orders transitions by sequence, then by time. */
export function sortTransitions(ts: Transition[] | undefined): Transition[] {
  return [...(ts ?? [])].sort((a, b) => {
    const d = seqOf(a) - seqOf(b);
    if (d !== 0) return d;
    return (parseTimestamp(a.at) ?? 0) - (parseTimestamp(b.at) ?? 0);
  });
}

function metaString(t: Transition, ...keys: string[]): string | undefined {
  const m = t.metadata;
  if (!m) return undefined;
  for (const k of keys) {
    const v = m[k];
    if (typeof v === 'string' && v !== '') return v;
  }
  return undefined;
}

/** retryDelay reads the backoff a failure reason announces ("retrying in 2s"). */
export function retryDelay(reason: string | undefined): number | undefined {
  if (!reason) return undefined;
  const m = /retrying in ([0-9][0-9.]*(?:ns|us|µs|μs|ms|s|m|h)(?:[0-9.]+(?:ns|us|µs|μs|ms|s|m|h))*)/.exec(reason);
  return m ? parseGoDuration(m[1]) : undefined;
}

/**
 * failureMessage takes the handler's message out of a failure reason such
 * as "attempt 1 of 3 failed, retrying in 10ms: boom".
 */
export function failureMessage(reason: string | undefined): string | undefined {
  if (!reason) return undefined;
  const m = /^attempt \d+[^:]*?(?:failed|timed out|lost)[^:]*: ([\s\S]+)$/.exec(reason);
  return m ? m[1] : undefined;
}

/** doneTimes lists, per step, when it became complete or resolved_manually. */
function doneTimes(steps: TimelineStep[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const s of steps) {
    const times: number[] = [];
    for (const t of s.transitions ?? []) {
      const at = parseTimestamp(t.at);
      if (at !== undefined && isDone(t.toState)) times.push(at);
    }
    times.sort((a, b) => a - b);
    out.set(s.name, times);
  }
  return out;
}

/**
 * parentsDoneBy is when the last of a step's parents was done, counting
 * only completions at or before t; undefined if a parent was not done by t.
 */
function parentsDoneBy(parents: string[], done: Map<string, number[]>, t: number): number | undefined {
  let latest = -Infinity;
  for (const p of parents) {
    const times = done.get(p);
    if (!times) continue; // unknown parent: nothing to wait for
    let best: number | undefined;
    for (const x of times) if (x <= t) best = x;
    if (best === undefined) return undefined;
    latest = Math.max(latest, best);
  }
  return latest;
}

/**
 * stepTimelines computes the waterfall rows of a task at time now, one per
 * step in template order.
 */
export function stepTimelines(task: TimelineTask, now: number): StepTimeline[] {
  const steps = task.steps ?? [];
  const created = parseTimestamp(task.createdAt) ?? now;
  const done = doneTimes(steps);
  const taskStopped = isTerminal(task.state);
  return steps.map((s, index) => {
    const parents = s.dependsOn ?? [];
    const readyBy = (t: number): number | undefined => {
      const p = parentsDoneBy(parents, done, t);
      return p === undefined ? undefined : Math.max(created, p);
    };
    const segments: Segment[] = [];
    const attempts: Attempt[] = [];
    let running: Attempt | undefined;
    let nextReady: number | undefined; // set by a retry that became due
    let failed: Attempt | undefined;

    for (const t of sortTransitions(s.transitions)) {
      const at = parseTimestamp(t.at);
      if (at === undefined) continue;
      if (t.fromState === 'STATE_IN_PROGRESS' && t.toState !== 'STATE_IN_PROGRESS') {
        const a: Attempt = running ?? { attempt: t.attempt || attempts.length + 1 };
        running = undefined;
        a.endedAt = at;
        a.outcome = t.toState;
        a.reason = t.reason;
        a.executor ??= metaString(t, 'executor');
        if (a.dispatchedAt !== undefined) {
          segments.push({
            kind: 'running', attempt: a.attempt, start: a.dispatchedAt, end: at, open: false,
            outcome: t.toState, executor: a.executor, reason: t.reason,
          });
        }
        if (t.toState === 'STATE_ERROR') {
          a.errorMessage = metaString(t, 'message', 'error') ?? failureMessage(t.reason);
          a.errorClass = metaString(t, 'error_class', 'errorClass', 'class');
          const dueMeta = parseTimestamp(metaString(t, 'retry_at', 'retryAt', 'next_retry_at'));
          const delay = retryDelay(t.reason);
          a.retryDueAt = dueMeta ?? (delay !== undefined ? at + delay : undefined);
          failed = a;
        } else {
          failed = undefined;
        }
        attempts.push(a);
      }
      if (t.toState === 'STATE_IN_PROGRESS') {
        const a: Attempt = { attempt: t.attempt || attempts.length + 1, dispatchedAt: at, executor: metaString(t, 'executor') };
        const ready = Math.min(nextReady ?? readyBy(at) ?? created, at);
        a.readyAt = ready;
        if (at > ready) segments.push({ kind: 'queued', attempt: a.attempt, start: ready, end: at, open: false });
        nextReady = undefined;
        running = a;
      } else if (t.fromState === 'STATE_ERROR' && t.toState === 'STATE_PENDING') {
        if (failed?.endedAt !== undefined) {
          // A retry by request comes before any due time: it is due then.
          const due = Math.min(failed.retryDueAt ?? at, at);
          if (due > failed.endedAt) {
            segments.push({ kind: 'backoff', attempt: failed.attempt, start: failed.endedAt, end: due, open: false, reason: t.reason });
          }
          failed.retryDueAt = due;
          nextReady = due;
        } else {
          nextReady = at;
        }
        failed = undefined;
      } else if (t.toState !== 'STATE_PENDING' && t.fromState === 'STATE_PENDING') {
        nextReady = undefined; // resolved or cancelled before running
      }
    }

    // What is still going on.
    if (running?.dispatchedAt !== undefined) {
      segments.push({
        kind: 'running', attempt: running.attempt, start: running.dispatchedAt, end: Math.max(now, running.dispatchedAt),
        open: true, executor: running.executor,
      });
      attempts.push(running);
    } else if (s.state === 'STATE_ERROR' && failed?.endedAt !== undefined && !taskStopped) {
      const due = parseTimestamp(s.nextRetryAt) ?? failed.retryDueAt;
      if (due !== undefined && due > failed.endedAt) {
        failed.retryDueAt = due;
        segments.push({ kind: 'backoff', attempt: failed.attempt, start: failed.endedAt, end: due, open: due > now });
        if (due < now) segments.push({ kind: 'queued', attempt: failed.attempt + 1, start: due, end: now, open: true });
      }
    } else if (s.state === 'STATE_PENDING' && !taskStopped) {
      const ready = nextReady ?? readyBy(now);
      if (ready !== undefined && ready <= now) {
        segments.push({ kind: 'queued', attempt: attempts.length + 1, start: ready, end: now, open: true });
      }
    }

    // The stored error is the last failed attempt's: it has the class.
    const last = attempts[attempts.length - 1];
    if (last && last.outcome === 'STATE_ERROR' && s.error) {
      last.errorMessage = s.error.message ?? last.errorMessage;
      last.errorClass = s.error.errorClass ?? last.errorClass;
    }
    const times = done.get(s.name) ?? [];
    return { name: s.name, index, segments, attempts, doneAt: times.length ? times[times.length - 1] : undefined };
  });
}

/**
 * criticalPath is the chain of steps that decided when the task finished:
 * from the step done last, back through the parent each was waiting for
 * (the one done last), to a root. It is returned root first; empty when no
 * step is done.
 */
export function criticalPath(
  steps: { name: string; dependsOn?: string[] }[],
  doneAt: Map<string, number | undefined>,
): string[] {
  const byName = new Map(steps.map((s) => [s.name, s]));
  let end: string | undefined;
  let endAt = -Infinity;
  for (const s of steps) {
    const t = doneAt.get(s.name);
    if (t !== undefined && t >= endAt) {
      end = s.name;
      endAt = t;
    }
  }
  const path: string[] = [];
  const seen = new Set<string>();
  for (let cur = end; cur !== undefined && !seen.has(cur); ) {
    seen.add(cur);
    path.push(cur);
    let next: string | undefined;
    let nextAt = -Infinity;
    for (const p of byName.get(cur)?.dependsOn ?? []) {
      const t = doneAt.get(p);
      if (t !== undefined && t > nextAt) {
        next = p;
        nextAt = t;
      }
    }
    cur = next;
  }
  return path.reverse();
}

/** Axis is the time span the waterfall draws. */
export interface Axis {
  start: number;
  end: number;
}

/** timeAxis spans the task's creation to the last segment's end. */
export function timeAxis(task: TimelineTask, rows: StepTimeline[], now: number): Axis {
  let start = parseTimestamp(task.createdAt) ?? Infinity;
  let end = -Infinity;
  for (const r of rows) {
    for (const s of r.segments) {
      start = Math.min(start, s.start);
      end = Math.max(end, s.end);
    }
  }
  if (!Number.isFinite(start)) start = now;
  if (!Number.isFinite(end) || end <= start) end = start + 1;
  return { start, end };
}

/**
 * ticks returns offsets from the axis start (in ms) at a round interval
 * (1, 2 or 5 times a power of ten) giving about target ticks.
 */
export function ticks(axis: Axis, target = 6): number[] {
  const span = axis.end - axis.start;
  if (!(span > 0)) return [0];
  const raw = span / Math.max(1, target);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((x) => x >= raw) ?? 10 * pow;
  const out: number[] = [];
  for (let i = 0; i * step <= span + step * 1e-9; i++) out.push(i * step);
  return out;
}

/** rowOrder sorts waterfall rows by when they first started, template order breaking ties. */
export function rowOrder(rows: StepTimeline[]): StepTimeline[] {
  const first = (r: StepTimeline) => (r.segments.length ? Math.min(...r.segments.map((s) => s.start)) : Infinity);
  return [...rows].sort((a, b) => {
    const d = first(a) - first(b);
    return d !== 0 && !Number.isNaN(d) ? d : a.index - b.index;
  });
}
