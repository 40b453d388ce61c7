import type { State } from '../api/types';

/**
 * States in the order a task or step usually goes through them. These are
 * the task states (the list page filters by them); a step may also be
 * STATE_SKIPPED, on a branch a decision step did not take.
 */
export const STATES: State[] = [
  'STATE_PENDING',
  'STATE_IN_PROGRESS',
  'STATE_COMPLETE',
  'STATE_ERROR',
  'STATE_CANCELLED',
  'STATE_RESOLVED_MANUALLY',
];

/** stateLabel is the name people and the CLI use: "in_progress". */
export function stateLabel(s: State | undefined): string {
  if (!s || s === 'STATE_UNSPECIFIED') return 'unknown';
  return s.replace(/^STATE_/, '').toLowerCase();
}

/**
 * stateColor is the fill that stands for a state everywhere on the
 * dashboard (graph nodes, badges, counts, the minimap). Chosen to be told
 * apart by people with the common colour blindnesses too: the pairs that
 * matter (complete/error, running/pending) differ in lightness as well.
 */
export function stateColor(s: State | undefined): string {
  switch (s) {
    case 'STATE_PENDING':
      return '#b8c0cc';
    case 'STATE_IN_PROGRESS':
      return '#2f6fdb';
    case 'STATE_COMPLETE':
      return '#1e9e5a';
    case 'STATE_ERROR':
      return '#d93b3b';
    case 'STATE_CANCELLED':
      return '#6b6b6b';
    case 'STATE_RESOLVED_MANUALLY':
      return '#8a4fd1';
    case 'STATE_SKIPPED':
      return '#f1ead2';
    default:
      return '#e0e0e0';
  }
}

/**
 * stateTextColor is a text colour readable on stateColor: dark on the light
 * fills (pending, skipped, and any state this build does not know).
 */
export function stateTextColor(s: State | undefined): string {
  switch (s) {
    case 'STATE_IN_PROGRESS':
    case 'STATE_COMPLETE':
    case 'STATE_ERROR':
    case 'STATE_CANCELLED':
    case 'STATE_RESOLVED_MANUALLY':
      return '#ffffff';
    default:
      return '#1d2330';
  }
}

/** isTerminal is true for the states a task stops in (a watch ends there). */
export function isTerminal(s: State | undefined): boolean {
  return (
    s === 'STATE_COMPLETE' || s === 'STATE_ERROR' || s === 'STATE_CANCELLED' || s === 'STATE_RESOLVED_MANUALLY'
  );
}

/** isDone is true for the step states that satisfy a step's children. */
export function isDone(s: State | undefined): boolean {
  return s === 'STATE_COMPLETE' || s === 'STATE_RESOLVED_MANUALLY';
}

/** parseState reads a state from a URL or a form: "error" or "STATE_ERROR". */
export function parseState(s: string | null | undefined): State | undefined {
  if (!s) return undefined;
  const full = (s.startsWith('STATE_') ? s : 'STATE_' + s).toUpperCase() as State;
  return STATES.includes(full) ? full : undefined;
}
