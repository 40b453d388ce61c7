import { describe, expect, it } from 'vitest';
import type { Task } from '../api/types';
import { applyTransition, graphSteps, maxSeq, waitingText } from './taskmodel';

const base = (): Task => ({
  id: 't1',
  state: 'STATE_PENDING',
  steps: [
    { name: 'a', state: 'STATE_PENDING', transitions: [], waiting: { reason: 'no_executor', handler: 'x' } },
    { name: 'b', dependsOn: ['a'], state: 'STATE_PENDING', transitions: [] },
  ],
  transitions: [{ seq: '1', toState: 'STATE_PENDING' }],
});

describe('applyTransition', () => {
  it('moves the step and keeps the transition', () => {
    const t = applyTransition(
      base(),
      { seq: '5', stepName: 'a', fromState: 'STATE_PENDING', toState: 'STATE_IN_PROGRESS', attempt: 1 },
      'STATE_IN_PROGRESS',
    );
    expect(t.state).toBe('STATE_IN_PROGRESS');
    expect(t.steps![0]).toMatchObject({ state: 'STATE_IN_PROGRESS', attempts: 1, waiting: null });
    expect(t.steps![0].transitions).toHaveLength(1);
    expect(t.steps![1].state).toBe('STATE_PENDING');
    expect(maxSeq(t)).toBe(5);
  });

  it('ignores a transition it already has', () => {
    const once = applyTransition(base(), { seq: '5', stepName: 'a', toState: 'STATE_COMPLETE' });
    const twice = applyTransition(once, { seq: '5', stepName: 'a', toState: 'STATE_COMPLETE' });
    expect(twice.steps![0].transitions).toHaveLength(1);
  });

  it('lets no transition it holds already take the task back to an older state', () => {
    const fresh = applyTransition(
      applyTransition(base(), { seq: '5', stepName: 'a', toState: 'STATE_IN_PROGRESS' }, 'STATE_IN_PROGRESS'),
      { seq: '9', toState: 'STATE_COMPLETE' },
      'STATE_COMPLETE',
    );
    const stale = applyTransition(fresh, { seq: '5', stepName: 'a', toState: 'STATE_IN_PROGRESS' }, 'STATE_IN_PROGRESS');
    expect(stale).toBe(fresh);
    expect(stale.state).toBe('STATE_COMPLETE');
  });

  it('applies task transitions to the task', () => {
    const t = applyTransition(base(), { seq: '9', toState: 'STATE_COMPLETE' });
    expect(t.state).toBe('STATE_COMPLETE');
    expect(t.transitions).toHaveLength(2);
    expect(maxSeq(t)).toBe(9);
  });

  it('leaves the input alone', () => {
    const b = base();
    applyTransition(b, { seq: '5', stepName: 'a', toState: 'STATE_COMPLETE' }, 'STATE_COMPLETE');
    expect(b).toEqual(base());
  });
});

describe('waitingText', () => {
  it('says why in words', () => {
    expect(waitingText({ reason: 'parents', on: ['charge', 'reserve'] })).toBe('waiting for charge, reserve to finish');
    expect(waitingText({ reason: 'no_executor', handler: 'ship' })).toBe('no connected executor hosts its handler "ship"');
    expect(waitingText({ reason: 'capacity', handler: 'ship' })).toBe('every executor hosting "ship" is full');
    expect(waitingText({ reason: 'backoff', until: '2024-01-01T00:00:00Z' })).toMatch(/^backing off until \d{4}-/);
    expect(waitingText({ reason: 'backoff' })).toBe('backing off before its next attempt');
    expect(waitingText({ reason: 'signal', key: 'approved' })).toBe('waiting for signal "approved"');
    expect(waitingText({ reason: 'signal', key: 'approved', until: '2024-01-01T00:00:00Z' })).toMatch(
      /^waiting for signal "approved", or until \d{4}-.* \(its timeout\)$/,
    );
    expect(waitingText({ reason: 'sleep', until: '2024-01-01T00:00:00Z' })).toMatch(/^sleeping until \d{4}-/);
    expect(waitingText({ reason: 'scheduled' })).toBe('its task starts later');
    expect(waitingText({ reason: 'child_task', key: 'shop/pack' })).toBe('waiting for its child task (shop/pack) to finish');
    expect(waitingText({ reason: 'concurrency', key: 'task:shop/order:context.customer=7' })).toBe(
      'concurrency key task:shop/order:context.customer=7 has as many running as it allows',
    );
    expect(waitingText({ reason: 'rate_limit', key: 'stripe', until: '2024-01-01T00:00:00Z' })).toMatch(
      /^rate limit stripe is out of tokens until \d{4}-/,
    );
    expect(waitingText({ reason: 'priority', key: 'gpu' })).toBe('there is room, but a waiter for gpu goes first');
    expect(waitingText({ reason: 'thinking', handler: 'h' })).toBe('thinking (handler h)');
    expect(waitingText(null)).toBeUndefined();
    expect(waitingText({})).toBeUndefined();
  });
});

describe('graphSteps', () => {
  it('hangs each for_each instance below its step', () => {
    const steps = graphSteps([
      { name: 'split' },
      { name: 'charge', dependsOn: ['split'] },
      { name: 'charge[0]', instanceOf: 'charge', index: 0 },
      { name: 'sum', dependsOn: ['charge'] },
    ]);
    expect(steps.map((s) => s.dependsOn ?? [])).toEqual([[], ['split'], ['charge'], ['charge']]);
  });
});
