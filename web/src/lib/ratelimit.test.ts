import { describe, expect, it } from 'vitest';
import { formatRate } from './ratelimit';

describe('formatRate', () => {
  it('writes the rate as limit set takes it', () => {
    expect(formatRate({ name: 'a', units: '100', period: '1s' })).toBe('100/s');
    expect(formatRate({ name: 'a', units: '30', period: '60s' })).toBe('30/m');
    expect(formatRate({ name: 'a', units: '5000', period: '3600s' })).toBe('5000/h');
    expect(formatRate({ name: 'a', units: '3', period: '0.250s' })).toBe('3 per 250 ms');
    expect(formatRate({ name: 'a', units: '1', period: '90s' })).toBe('1 per 1 m 30 s');
    expect(formatRate({ name: 'a', units: '1' })).toBe('1 per ?');
  });
});
