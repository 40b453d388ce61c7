// Keeping a task up to date from its watch stream between full reloads.

import type { State, Step, Task, Transition, Waiting } from '../api/types';
import { formatTime, parseTimestamp } from './time';

/** maxSeq is the highest transition sequence number a task holds (0 if none). */
export function maxSeq(task: Task): number {
  let m = 0;
  for (const t of task.transitions ?? []) m = Math.max(m, Number(t.seq ?? 0));
  for (const s of task.steps ?? []) for (const t of s.transitions ?? []) m = Math.max(m, Number(t.seq ?? 0));
  return m;
}

/**
 * applyTransition returns the task with one streamed transition applied:
 * the step (or task) moves to its new state and keeps the transition.
 * A transition already held (same seq) changes nothing, so a watch that
 * resumes from an older point is harmless. What only the coordinator knows
 * (waiting reasons, errors, results) comes with the next reload.
 */
export function applyTransition(task: Task, tr: Transition, taskState?: State): Task {
  const seq = tr.seq ?? '';
  const has = (ts: Transition[] | undefined) => seq !== '' && (ts ?? []).some((t) => t.seq === seq);
  // Held already (a reload brought it first): then so is its task state,
  // and an older one must not overwrite a newer.
  if (tr.stepName ? has(task.steps?.find((s) => s.name === tr.stepName)?.transitions) : has(task.transitions)) return task;
  let next: Task = task;
  if (tr.stepName) {
    const steps = (task.steps ?? []).map((s): Step => {
      if (s.name !== tr.stepName || has(s.transitions)) return s;
      const moved: Step = { ...s, state: tr.toState, transitions: [...(s.transitions ?? []), tr] };
      if (tr.toState === 'STATE_IN_PROGRESS') {
        if (tr.attempt) moved.attempts = tr.attempt;
        moved.waiting = null;
      }
      return moved;
    });
    next = { ...task, steps };
  } else if (!has(task.transitions)) {
    next = { ...task, state: tr.toState ?? task.state, transitions: [...(task.transitions ?? []), tr] };
  }
  if (taskState && taskState !== 'STATE_UNSPECIFIED' && next.state !== taskState) next = { ...next, state: taskState };
  return next;
}

/** waitingText says why a step waits, in words; unknown reasons are shown as they are. */
export function waitingText(w: Waiting | null | undefined): string | undefined {
  if (!w || !w.reason) return undefined;
  switch (w.reason) {
    case 'parents':
      return `waiting for ${w.on && w.on.length ? w.on.join(', ') : 'its parents'} to finish`;
    case 'backoff': {
      const until = parseTimestamp(w.until);
      return until ? `backing off until ${formatTime(until)}` : 'backing off before its next attempt';
    }
    case 'no_executor':
      return `no connected executor hosts its handler "${w.handler ?? '?'}"`;
    case 'capacity':
      return `every executor hosting "${w.handler ?? '?'}" is full`;
    case 'signal': {
      const until = parseTimestamp(w.until);
      return `waiting for signal "${w.key ?? '?'}"${until ? `, or until ${formatTime(until)} (its timeout)` : ''}`;
    }
    case 'sleep':
      return `sleeping${untilText(w, ' until ', '')}`;
    case 'scheduled':
      return `its task starts${untilText(w, ' at ', ' later')}`;
    case 'child_task':
      return `waiting for its child task${w.key ? ` (${w.key})` : ''} to finish`;
    case 'concurrency':
      return `concurrency key ${w.key ?? '?'} has as many running as it allows`;
    case 'rate_limit':
      return `rate limit ${w.key ?? '?'} is out of tokens${untilText(w, ' until ', '')}`;
    case 'priority':
      return `there is room, but a waiter for ${w.key ?? '?'} goes first`;
    default: {
      const bits = [w.on?.length ? `on ${w.on.join(', ')}` : '', w.handler ? `handler ${w.handler}` : ''].filter(Boolean);
      return bits.length ? `${w.reason} (${bits.join('; ')})` : w.reason;
    }
  }
}

/** untilText is prefix and the wait's end, or fallback when it has none. */
function untilText(w: Waiting, prefix: string, fallback: string): string {
  const until = parseTimestamp(w.until);
  return until ? `${prefix}${formatTime(until)}` : fallback;
}

/**
 * graphSteps draws each for_each instance below its step: an instance
 * depends on nothing in the template, but it runs inside its step's run.
 */
export function graphSteps(steps: Step[]): Step[] {
  return steps.map((s) => (s.instanceOf ? { ...s, dependsOn: [s.instanceOf] } : s));
}
