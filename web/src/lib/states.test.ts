import { describe, expect, it } from 'vitest';
import type { State } from '../api/types';
import { STATES, isDone, isTerminal, parseState, stateColor, stateLabel, stateTextColor } from './states';

describe('states', () => {
  it('labels states as the CLI does', () => {
    expect(stateLabel('STATE_IN_PROGRESS')).toBe('in_progress');
    expect(stateLabel('STATE_RESOLVED_MANUALLY')).toBe('resolved_manually');
    expect(stateLabel(undefined)).toBe('unknown');
    expect(stateLabel('STATE_UNSPECIFIED')).toBe('unknown');
  });

  it('gives every state its own colour', () => {
    const all: State[] = [...STATES, 'STATE_SKIPPED'];
    const colours = all.map(stateColor);
    expect(new Set(colours).size).toBe(all.length);
    expect(colours).not.toContain(stateColor(undefined));
    expect(stateColor('STATE_COMPLETE')).toBe('#1e9e5a');
    expect(stateColor('STATE_ERROR')).toBe('#d93b3b');
    expect(stateColor(undefined)).toBe('#e0e0e0');
  });

  it('picks dark text on the light fills only', () => {
    expect(stateTextColor('STATE_PENDING')).toBe('#1d2330');
    expect(stateTextColor('STATE_SKIPPED')).toBe('#1d2330');
    expect(stateTextColor('STATE_ERROR')).toBe('#ffffff');
    // A state a newer coordinator sends is drawn on the default light fill.
    expect(stateTextColor('STATE_LATER' as State)).toBe('#1d2330');
    expect(stateLabel('STATE_LATER' as State)).toBe('later');
  });

  it('labels a skipped step, which satisfies no child', () => {
    expect(stateLabel('STATE_SKIPPED')).toBe('skipped');
    expect(isDone('STATE_SKIPPED')).toBe(false);
    expect(isTerminal('STATE_SKIPPED')).toBe(false);
  });

  it('knows terminal and done states', () => {
    expect(STATES.filter(isTerminal)).toEqual([
      'STATE_COMPLETE',
      'STATE_ERROR',
      'STATE_CANCELLED',
      'STATE_RESOLVED_MANUALLY',
    ]);
    expect(STATES.filter(isDone)).toEqual(['STATE_COMPLETE', 'STATE_RESOLVED_MANUALLY']);
  });

  it('reads states from URLs', () => {
    expect(parseState('error')).toBe('STATE_ERROR');
    expect(parseState('STATE_COMPLETE')).toBe('STATE_COMPLETE');
    expect(parseState('in_progress')).toBe('STATE_IN_PROGRESS');
    expect(parseState('bogus')).toBeUndefined();
    expect(parseState('')).toBeUndefined();
  });
});
