import { describe, expect, it } from 'vitest';
import { STATES, isDone, isTerminal, parseState, stateColor, stateLabel, stateTextColor } from './states';

describe('states', () => {
  it('labels states as the CLI does', () => {
    expect(stateLabel('STATE_IN_PROGRESS')).toBe('in_progress');
    expect(stateLabel('STATE_RESOLVED_MANUALLY')).toBe('resolved_manually');
    expect(stateLabel(undefined)).toBe('unknown');
    expect(stateLabel('STATE_UNSPECIFIED')).toBe('unknown');
  });

  it('gives every state its own colour', () => {
    const colours = STATES.map(stateColor);
    expect(new Set(colours).size).toBe(STATES.length);
    expect(stateColor('STATE_COMPLETE')).toBe('#1e9e5a');
    expect(stateColor('STATE_ERROR')).toBe('#d93b3b');
    expect(stateColor(undefined)).toBe('#e0e0e0');
  });

  it('picks dark text only on the light pending fill', () => {
    expect(stateTextColor('STATE_PENDING')).toBe('#1d2330');
    expect(stateTextColor('STATE_ERROR')).toBe('#ffffff');
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
