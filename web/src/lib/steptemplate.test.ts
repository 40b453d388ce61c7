import { describe, expect, it } from 'vitest';
import { stepRuns, stepTraits } from './steptemplate';

describe('stepRuns', () => {
  it('names the handler, or what the coordinator runs instead', () => {
    expect(stepRuns({ name: 'a', handler: 'charge' })).toBe('handler charge');
    expect(stepRuns({ name: 'a', waitFor: { signal: 'approved' } })).toBe('waits for signal "approved"');
    expect(stepRuns({ name: 'a', waitFor: { signal: 'approved', timeout: '259200s' } })).toBe(
      'waits for signal "approved", timeout 3 d 0 h',
    );
    expect(stepRuns({ name: 'a', sleep: '2s' })).toBe('sleeps 2.00 s');
    expect(stepRuns({ name: 'a', until: 'results.quote.expires_at' })).toBe('waits until results.quote.expires_at');
    expect(stepRuns({ name: 'a', task: 'shop/pack@1.0.0', taskContext: { sku: 'context.sku', box: '"s"' } })).toBe(
      'child task shop/pack@1.0.0 (context: box, sku)',
    );
    expect(stepRuns({ name: 'a', task: 'shop/pack' })).toBe('child task shop/pack');
    expect(stepRuns({ name: 'a' })).toBe('—');
  });
});

describe('stepTraits', () => {
  it('lists fan-out, decisions, keys and limits', () => {
    expect(stepTraits({ name: 'a', handler: 'h' })).toEqual([]);
    expect(
      stepTraits({
        name: 'a',
        forEach: 'results.split.items',
        decision: true,
        concurrency: [
          { key: 'context.customer', maxRunning: 2 },
          { key: 'context.region', maxRunning: 1, strategy: 'queue' },
        ],
        rateLimits: [{ name: 'stripe' }, { name: 'email', units: 3, key: 'context.tenant' }],
      }),
    ).toEqual([
      'for each item of results.split.items',
      'decision: its result picks the children that run',
      'at most 2 running per context.customer',
      'at most 1 running per context.region',
      'rate limit stripe',
      'rate limit 3 units of email per context.tenant',
    ]);
  });
});
