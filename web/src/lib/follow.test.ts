import { describe, expect, it } from 'vitest';
import { followEvents, type StreamMessage, type Subscribe } from './follow';

interface Ev {
  n: number;
}

/** script runs one step per subscription: the messages it sends, then how it ends. */
type Step = { send: StreamMessage<Ev>[]; end: 'close' | { code: number } };

function scripted(steps: Step[], ac: AbortController) {
  const asked: (string | undefined)[] = [];
  const subscribe: Subscribe<Ev> = async (after, onMessage, _signal, onOpen) => {
    asked.push(after);
    const step = steps.shift();
    if (!step) {
      ac.abort();
      return;
    }
    // A refusal comes before the stream opens.
    if (step.end === 'close' || step.send.length > 0) onOpen();
    for (const m of step.send) onMessage(m);
    if (step.end !== 'close') throw Object.assign(new Error('refused'), { code: step.end.code });
  };
  return { subscribe, asked };
}

function hooks(log: string[]) {
  return {
    onEvent: (e: Ev) => log.push(`event ${e.n}`),
    onStatus: (s: string) => log.push(s),
    onGap: () => log.push('gap'),
    sleep: async (ms: number) => void log.push(`sleep ${ms}`),
    isAbort: () => false,
  };
}

describe('followEvents', () => {
  it('resumes after a break from the last cursor it got, and keeps it for the caller', async () => {
    const ac = new AbortController();
    const { subscribe, asked } = scripted(
      [
        { send: [{ event: { n: 1, cursor: 'c1' } }, {}, { event: { n: 2, cursor: 'c2' } }], end: 'close' },
        { send: [{ event: { n: 3, cursor: 'c3' } }], end: 'close' },
      ],
      ac,
    );
    const from: { cursor?: string } = { cursor: 'c0' };
    const log: string[] = [];
    await followEvents(subscribe, from, ac.signal, hooks(log));
    expect(asked).toEqual(['c0', 'c2', 'c3']);
    expect(from.cursor).toBe('c3');
    expect(log).toEqual(['live', 'event 1', 'event 2', 'sleep 200', 'live', 'event 3', 'sleep 200']);
  });

  it('goes on from now when the log no longer holds its cursor, and says so', async () => {
    const ac = new AbortController();
    const { subscribe, asked } = scripted(
      [
        { send: [], end: { code: 11 } },
        { send: [{ event: { n: 9, cursor: 'c9' } }], end: 'close' },
      ],
      ac,
    );
    const from: { cursor?: string } = { cursor: 'expired' };
    const log: string[] = [];
    await followEvents(subscribe, from, ac.signal, hooks(log));
    expect(asked).toEqual(['expired', undefined, 'c9']);
    expect(log).toEqual(['gap', 'live', 'event 9', 'sleep 200']);
  });

  it('backs off while the stream is refused for another reason', async () => {
    const ac = new AbortController();
    const { subscribe, asked } = scripted(
      [
        { send: [], end: { code: 12 } },
        { send: [], end: { code: 11 } }, // no cursor to resume from: not a gap
        { send: [{ event: { n: 1, cursor: 'c1' } }], end: 'close' },
      ],
      ac,
    );
    const log: string[] = [];
    await followEvents(subscribe, {}, ac.signal, hooks(log));
    expect(asked).toEqual([undefined, undefined, undefined, 'c1']);
    expect(log).toEqual(['polling', 'sleep 2000', 'polling', 'sleep 4000', 'live', 'event 1', 'sleep 200']);
  });
});
