import { describe, expect, it } from 'vitest';
import {
  formatAgo,
  formatIn,
  formatDuration,
  fromLocalInput,
  parseDuration,
  parseGoDuration,
  parseTimestamp,
  toLocalInput,
} from './time';

describe('parseTimestamp', () => {
  it('keeps sub-millisecond precision', () => {
    const a = parseTimestamp('2026-11-30T22:38:19.392480075Z')!;
    const b = parseTimestamp('2026-11-30T22:38:19.394610844Z')!;
    expect(Math.floor(a)).toBe(Date.UTC(2026, 10, 30, 22, 38, 19, 392));
    expect(b - a).toBeCloseTo(2.130769, 3);
  });
  it('reads offsets and whole seconds', () => {
    expect(parseTimestamp('2024-01-01T01:00:00+01:00')).toBe(Date.UTC(2024, 0, 1));
    expect(parseTimestamp('2024-01-01T00:00:00Z')).toBe(Date.UTC(2024, 0, 1));
  });
  it('treats empty, zero and garbage as unset', () => {
    expect(parseTimestamp('')).toBeUndefined();
    expect(parseTimestamp(null)).toBeUndefined();
    expect(parseTimestamp('0001-01-01T00:00:00Z')).toBeUndefined();
    expect(parseTimestamp('yesterday')).toBeUndefined();
  });
});

describe('durations', () => {
  it('reads protojson durations', () => {
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('0.000250s')).toBeCloseTo(0.25);
    expect(parseDuration('30s')).toBe(30000);
    expect(parseDuration('-2s')).toBe(-2000);
    expect(parseDuration('5m')).toBeUndefined();
    expect(parseDuration(undefined)).toBeUndefined();
  });
  it('reads Go durations', () => {
    expect(parseGoDuration('10ms')).toBe(10);
    expect(parseGoDuration('1.5s')).toBe(1500);
    expect(parseGoDuration('2m30s')).toBe(150000);
    expect(parseGoDuration('1h0m0s')).toBe(3600000);
    expect(parseGoDuration('750µs')).toBeCloseTo(0.75);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('10 ms')).toBeUndefined();
    expect(parseGoDuration('soon')).toBeUndefined();
    expect(parseGoDuration('')).toBeUndefined();
  });
  it('formats for people', () => {
    expect(formatDuration(undefined)).toBe('—');
    expect(formatDuration(0)).toBe('0');
    expect(formatDuration(0.25)).toBe('250 µs');
    expect(formatDuration(2.5)).toBe('2.50 ms');
    expect(formatDuration(42.25)).toBe('42.3 ms');
    expect(formatDuration(420)).toBe('420 ms');
    expect(formatDuration(1520)).toBe('1.52 s');
    expect(formatDuration(12500)).toBe('12.5 s');
    expect(formatDuration(125000)).toBe('2 m 05 s');
    expect(formatDuration(3 * 3600000 + 4 * 60000)).toBe('3 h 04 m');
    expect(formatDuration(50 * 3600000)).toBe('2 d 2 h');
    expect(formatDuration(-1500)).toBe('-1.50 s');
  });
  it('says how long ago', () => {
    expect(formatAgo(undefined, 0)).toBe('never');
    expect(formatAgo(10_000, 10_400)).toBe('just now');
    expect(formatAgo(10_000, 14_000)).toBe('4.00 s ago');
  });
  it('says how long until', () => {
    expect(formatIn(undefined, 0)).toBe('—');
    expect(formatIn(10_400, 10_000)).toBe('due now');
    expect(formatIn(9_000, 10_000)).toBe('due now');
    expect(formatIn(14_000, 10_000)).toBe('in 4.00 s');
  });
});

describe('datetime-local inputs', () => {
  it('round-trips a minute', () => {
    const t = new Date(2024, 4, 6, 7, 8).getTime();
    expect(toLocalInput(t)).toBe('2024-05-06T07:08');
    expect(fromLocalInput('2024-05-06T07:08')).toBe(t);
    expect(fromLocalInput('')).toBeUndefined();
    expect(fromLocalInput('nope')).toBeUndefined();
  });
});
