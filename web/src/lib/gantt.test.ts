import { describe, expect, it } from 'vitest';
import type { State, Transition } from '../api/types';
import {
  criticalPath,
  failureMessage,
  retryDelay,
  rowOrder,
  stepTimelines,
  ticks,
  timeAxis,
  type TimelineTask,
} from './gantt';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const iso = (ms: number) => new Date(T0 + ms).toISOString();

let seq = 0;
function tr(from: State, to: State, at: number, reason: string, attempt = 0, executor?: string): Transition {
  seq++;
  return {
    seq: String(seq), fromState: from, toState: to, at: iso(at), reason, attempt,
    metadata: executor ? { executor } : null,
  };
}

// The shape of demo/order_fulfillment after a run in which charge failed
// once (retrying in 10ms) and reserve slept 50ms, as the coordinator
// records it (dispatch in the same commit as the parent's completion).
function orderTask(): TimelineTask {
  seq = 0;
  return {
    createdAt: iso(0),
    state: 'STATE_COMPLETE',
    steps: [
      {
        name: 'validate', state: 'STATE_COMPLETE',
        transitions: [
          tr('STATE_PENDING', 'STATE_IN_PROGRESS', 1, 'dispatched attempt 1 to executor e1', 1, 'e1'),
          tr('STATE_IN_PROGRESS', 'STATE_COMPLETE', 3, 'attempt 1 succeeded', 1, 'e1'),
        ],
      },
      {
        name: 'charge', dependsOn: ['validate'], state: 'STATE_COMPLETE', attempts: 2,
        transitions: [
          tr('STATE_PENDING', 'STATE_IN_PROGRESS', 3, 'dispatched attempt 1 to executor e1', 1, 'e1'),
          tr('STATE_IN_PROGRESS', 'STATE_ERROR', 5, 'attempt 1 of 3 failed, retrying in 10ms: flaky: attempt 1 fails on purpose (fail_times 1)', 1, 'e1'),
          // No executor was free when the retry was due at 15: dispatched at 18.
          tr('STATE_ERROR', 'STATE_PENDING', 18, 'retrying after attempt 1 of 3 failed', 1),
          tr('STATE_PENDING', 'STATE_IN_PROGRESS', 18, 'dispatched attempt 2 to executor e2', 2, 'e2'),
          tr('STATE_IN_PROGRESS', 'STATE_COMPLETE', 20, 'attempt 2 succeeded', 2, 'e2'),
        ],
      },
      {
        name: 'reserve', dependsOn: ['validate'], state: 'STATE_COMPLETE',
        transitions: [
          tr('STATE_PENDING', 'STATE_IN_PROGRESS', 4, 'dispatched attempt 1 to executor e1', 1, 'e1'),
          tr('STATE_IN_PROGRESS', 'STATE_COMPLETE', 54, 'attempt 1 succeeded', 1, 'e1'),
        ],
      },
      {
        name: 'ship', dependsOn: ['charge', 'reserve'], state: 'STATE_COMPLETE',
        transitions: [
          tr('STATE_PENDING', 'STATE_IN_PROGRESS', 54, 'dispatched attempt 1 to executor e1', 1, 'e1'),
          tr('STATE_IN_PROGRESS', 'STATE_COMPLETE', 56, 'attempt 1 succeeded', 1, 'e1'),
        ],
      },
    ],
  };
}

const rel = (rows: ReturnType<typeof stepTimelines>, name: string) =>
  rows
    .find((r) => r.name === name)!
    .segments.map((s) => [s.kind, s.attempt, Math.round(s.start - T0), Math.round(s.end - T0), s.open]);

describe('stepTimelines', () => {
  it('draws queued, running and backoff time of every attempt', () => {
    const rows = stepTimelines(orderTask(), T0 + 100);
    expect(rel(rows, 'validate')).toEqual([
      ['queued', 1, 0, 1, false],
      ['running', 1, 1, 3, false],
    ]);
    expect(rel(rows, 'charge')).toEqual([
      ['running', 1, 3, 5, false],
      ['backoff', 1, 5, 15, false],
      ['queued', 2, 15, 18, false],
      ['running', 2, 18, 20, false],
    ]);
    // Ready when validate was done at 3, dispatched at 4.
    expect(rel(rows, 'reserve')).toEqual([
      ['queued', 1, 3, 4, false],
      ['running', 1, 4, 54, false],
    ]);
    // Ready only when its last parent (reserve) was done.
    expect(rel(rows, 'ship')).toEqual([['running', 1, 54, 56, false]]);
  });

  it('lists attempts with executor, outcome and error', () => {
    const task = orderTask();
    task.steps![1].error = { message: 'flaky: attempt 1 fails on purpose (fail_times 1)', errorClass: 'FlakyFailure' };
    const charge = stepTimelines(task, T0 + 100)[1];
    expect(charge.attempts.map((a) => [a.attempt, a.executor, a.outcome])).toEqual([
      [1, 'e1', 'STATE_ERROR'],
      [2, 'e2', 'STATE_COMPLETE'],
    ]);
    expect(charge.attempts[0].errorMessage).toBe('flaky: attempt 1 fails on purpose (fail_times 1)');
    expect(charge.attempts[0].retryDueAt! - T0).toBeCloseTo(15);
    // The stored error belongs to the last failed attempt only.
    expect(charge.attempts[0].errorClass).toBeUndefined();
    expect(charge.doneAt! - T0).toBeCloseTo(20);
  });

  it("reads a failure's error, class and retry time from its metadata", () => {
    seq = 0;
    const transitions = [
      tr('STATE_PENDING', 'STATE_IN_PROGRESS', 1, 'dispatched attempt 1 to executor e1', 1, 'e1'),
      tr('STATE_IN_PROGRESS', 'STATE_ERROR', 5, 'attempt 1 of 3 failed, retrying in 10ms: boom', 1),
      tr('STATE_ERROR', 'STATE_PENDING', 20, 'retrying after attempt 1 of 3 failed', 1),
      tr('STATE_PENDING', 'STATE_IN_PROGRESS', 20, 'dispatched attempt 2 to executor e2', 2, 'e2'),
      tr('STATE_IN_PROGRESS', 'STATE_COMPLETE', 22, 'attempt 2 succeeded', 2, 'e2'),
    ];
    // The coordinator's metadata wins over the rounded delay in the reason.
    transitions[1].metadata = { executor: 'e1', error: 'boom', error_class: 'Boom', retry_at: iso(17) };
    const rows = stepTimelines(
      { createdAt: iso(0), state: 'STATE_COMPLETE', steps: [{ name: 's', state: 'STATE_COMPLETE', transitions }] },
      T0 + 50,
    );
    expect(rows[0].attempts[0]).toMatchObject({ executor: 'e1', errorMessage: 'boom', errorClass: 'Boom' });
    expect(rel(rows, 's')).toEqual([
      ['queued', 1, 0, 1, false],
      ['running', 1, 1, 5, false],
      ['backoff', 1, 5, 17, false],
      ['queued', 2, 17, 20, false],
      ['running', 2, 20, 22, false],
    ]);
  });

  it('takes the stored error class for a last attempt that failed', () => {
    seq = 0;
    const rows = stepTimelines(
      {
        createdAt: iso(0), state: 'STATE_ERROR',
        steps: [{
          name: 'b', state: 'STATE_ERROR', error: { message: 'boom', errorClass: 'Boom' },
          transitions: [
            tr('STATE_PENDING', 'STATE_IN_PROGRESS', 1, 'dispatched attempt 1 to executor e1', 1, 'e1'),
            tr('STATE_IN_PROGRESS', 'STATE_ERROR', 2, 'attempt 1 failed permanently, not retried: boom', 1, 'e1'),
          ],
        }],
      },
      T0 + 50,
    );
    expect(rows[0].attempts[0]).toMatchObject({ errorMessage: 'boom', errorClass: 'Boom', outcome: 'STATE_ERROR' });
    // The task stopped: nothing is drawn as still waiting.
    expect(rel(rows, 'b')).toEqual([
      ['queued', 1, 0, 1, false],
      ['running', 1, 1, 2, false],
    ]);
  });

  it('draws a retry by request as due when it was asked for', () => {
    seq = 0;
    const rows = stepTimelines(
      {
        createdAt: iso(0), state: 'STATE_COMPLETE',
        steps: [{
          name: 'b', state: 'STATE_COMPLETE',
          transitions: [
            tr('STATE_PENDING', 'STATE_IN_PROGRESS', 0, 'dispatched attempt 1 to executor e1', 1, 'e1'),
            tr('STATE_IN_PROGRESS', 'STATE_ERROR', 2, 'attempt 1 failed permanently, not retried: boom', 1, 'e1'),
            tr('STATE_ERROR', 'STATE_PENDING', 40, 'retried by request', 1),
            tr('STATE_PENDING', 'STATE_IN_PROGRESS', 41, 'dispatched attempt 2 to executor e1', 2, 'e1'),
            tr('STATE_IN_PROGRESS', 'STATE_COMPLETE', 43, 'attempt 2 succeeded', 2, 'e1'),
          ],
        }],
      },
      T0 + 50,
    );
    expect(rel(rows, 'b')).toEqual([
      ['running', 1, 0, 2, false],
      ['backoff', 1, 2, 40, false],
      ['queued', 2, 40, 41, false],
      ['running', 2, 41, 43, false],
    ]);
  });

  it('draws what is still going on up to now', () => {
    seq = 0;
    const task: TimelineTask = {
      createdAt: iso(0), state: 'STATE_IN_PROGRESS',
      steps: [
        {
          name: 'a', state: 'STATE_IN_PROGRESS',
          transitions: [tr('STATE_PENDING', 'STATE_IN_PROGRESS', 2, 'dispatched attempt 1 to executor e1', 1, 'e1')],
        },
        {
          name: 'r', state: 'STATE_ERROR', nextRetryAt: iso(80),
          transitions: [
            tr('STATE_PENDING', 'STATE_IN_PROGRESS', 1, 'dispatched attempt 1 to executor e1', 1, 'e1'),
            tr('STATE_IN_PROGRESS', 'STATE_ERROR', 10, 'attempt 1 of 3 failed, retrying in 70ms: x', 1, 'e1'),
          ],
        },
        { name: 'late', state: 'STATE_ERROR', nextRetryAt: iso(20), transitions: [
          tr('STATE_PENDING', 'STATE_IN_PROGRESS', 1, 'dispatched attempt 1 to executor e1', 1, 'e1'),
          tr('STATE_IN_PROGRESS', 'STATE_ERROR', 10, 'attempt 1 of 3 failed, retrying in 10ms: x', 1, 'e1'),
        ] },
        // A root no executor takes: queued since the task was created.
        { name: 'unhosted', state: 'STATE_PENDING', transitions: [] },
        // Its parent is not done: not queued, not drawn.
        { name: 'child', dependsOn: ['a'], state: 'STATE_PENDING', transitions: [] },
      ],
    };
    const rows = stepTimelines(task, T0 + 50);
    expect(rel(rows, 'a')).toEqual([
      ['queued', 1, 0, 2, false],
      ['running', 1, 2, 50, true],
    ]);
    expect(rows[0].attempts.map((a) => a.endedAt)).toEqual([undefined]);
    expect(rel(rows, 'r')).toEqual([
      ['queued', 1, 0, 1, false],
      ['running', 1, 1, 10, false],
      ['backoff', 1, 10, 80, true],
    ]);
    expect(rel(rows, 'late')).toEqual([
      ['queued', 1, 0, 1, false],
      ['running', 1, 1, 10, false],
      ['backoff', 1, 10, 20, false],
      ['queued', 2, 20, 50, true],
    ]);
    expect(rel(rows, 'unhosted')).toEqual([['queued', 1, 0, 50, true]]);
    expect(rel(rows, 'child')).toEqual([]);
  });

  it('tolerates missing fields', () => {
    expect(stepTimelines({}, T0)).toEqual([]);
    const rows = stepTimelines({ steps: [{ name: 'x' }] }, T0);
    expect(rows[0]).toMatchObject({ name: 'x', segments: [], attempts: [] });
  });
});

describe('reasons', () => {
  it('reads the announced backoff', () => {
    expect(retryDelay('attempt 1 of 3 failed, retrying in 10ms: boom')).toBe(10);
    expect(retryDelay('attempt 2 of 5 failed, retrying in 1m30s: boom')).toBe(90000);
    expect(retryDelay('attempt 1 of 3 failed, retrying in 0s: boom')).toBe(0);
    expect(retryDelay('attempt 3 of 3 failed, no attempt left: boom')).toBeUndefined();
    expect(retryDelay(undefined)).toBeUndefined();
  });
  it("takes the handler's message out of a failure reason", () => {
    expect(failureMessage('attempt 1 of 3 failed, retrying in 10ms: flaky: attempt 1 fails')).toBe('flaky: attempt 1 fails');
    expect(failureMessage('attempt 3 of 3 failed, no attempt left: x: y')).toBe('x: y');
    expect(failureMessage('attempt 1 failed permanently, not retried: boom')).toBe('boom');
    expect(failureMessage('attempt 2 of 3 failed, retrying in 2s: attempt 2 timed out after 30s')).toBe(
      'attempt 2 timed out after 30s',
    );
    expect(failureMessage('cancelled by request')).toBeUndefined();
  });
});

describe('criticalPath', () => {
  const steps = [
    { name: 'validate' },
    { name: 'charge', dependsOn: ['validate'] },
    { name: 'reserve', dependsOn: ['validate'] },
    { name: 'ship', dependsOn: ['charge', 'reserve'] },
  ];
  it('follows the parent each step waited for', () => {
    const rows = stepTimelines(orderTask(), T0 + 100);
    const done = new Map(rows.map((r) => [r.name, r.doneAt]));
    expect(criticalPath(steps, done)).toEqual(['validate', 'reserve', 'ship']);
    done.set('charge', T0 + 60);
    done.set('ship', T0 + 62);
    expect(criticalPath(steps, done)).toEqual(['validate', 'charge', 'ship']);
  });
  it('ends at the step done last while the task runs', () => {
    expect(criticalPath(steps, new Map([['validate', 1], ['charge', 5]]))).toEqual(['validate', 'charge']);
  });
  it('is empty before anything is done and survives cycles', () => {
    expect(criticalPath(steps, new Map())).toEqual([]);
    const cyc = [{ name: 'a', dependsOn: ['b'] }, { name: 'b', dependsOn: ['a'] }];
    expect(criticalPath(cyc, new Map([['a', 2], ['b', 1]]))).toEqual(['b', 'a']);
  });
});

describe('axis and ticks', () => {
  it('spans the task', () => {
    const task = orderTask();
    const rows = stepTimelines(task, T0 + 100);
    const axis = timeAxis(task, rows, T0 + 100);
    expect(axis.start).toBe(T0);
    expect(Math.round(axis.end - T0)).toBe(56);
    expect(timeAxis({}, [], T0)).toEqual({ start: T0, end: T0 + 1 });
  });
  it('puts ticks at round intervals', () => {
    expect(ticks({ start: 0, end: 56 }, 6)).toEqual([0, 10, 20, 30, 40, 50]);
    expect(ticks({ start: 0, end: 1000 }, 5)).toEqual([0, 200, 400, 600, 800, 1000]);
    expect(ticks({ start: 5, end: 5 })).toEqual([0]);
  });
  it('orders rows by first start', () => {
    const rows = rowOrder(stepTimelines(orderTask(), T0 + 100));
    expect(rows.map((r) => r.name)).toEqual(['validate', 'charge', 'reserve', 'ship']);
  });
});
