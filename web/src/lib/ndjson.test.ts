import { describe, expect, it } from 'vitest';
import { NdjsonDecoder, StreamError, readNdjson, streamResult } from './ndjson';

function bodyOf(chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(typeof ch === 'string' ? enc.encode(ch) : ch);
      c.close();
    },
  });
}

describe('NdjsonDecoder', () => {
  it('joins lines split across chunks and skips blank lines', () => {
    const d = new NdjsonDecoder();
    expect(d.push('{"result":{"a":1}}\n{"res')).toEqual([{ result: { a: 1 } }]);
    expect(d.push('ult":{"a":2}}\r\n\n')).toEqual([{ result: { a: 2 } }]);
    expect(d.push('{"result":{"a":3}}')).toEqual([]);
    expect(d.end()).toEqual([{ result: { a: 3 } }]);
    expect(d.end()).toEqual([]);
  });

  it('refuses a line that is not JSON', () => {
    const d = new NdjsonDecoder();
    expect(() => d.push('<html>\n')).toThrow(StreamError);
  });
});

describe('streamResult', () => {
  it('unwraps results and throws errors', () => {
    expect(streamResult({ result: { x: 1 } })).toEqual({ x: 1 });
    expect(() => streamResult({ error: { code: 5, message: 'task t not found' } })).toThrow('task t not found');
    try {
      streamResult({ error: { code: 7, message: 'no' } });
    } catch (e) {
      expect((e as StreamError).code).toBe(7);
    }
    expect(() => streamResult({ other: 1 })).toThrow(StreamError);
    expect(() => streamResult(null)).toThrow(StreamError);
  });
});

describe('readNdjson', () => {
  it('delivers every message in order, across chunk and UTF-8 boundaries', async () => {
    const enc = new TextEncoder().encode('{"result":{"s":"é"}}\n');
    // Split inside the two bytes of é.
    const cut = enc.indexOf(0xc3) + 1;
    const got: unknown[] = [];
    await readNdjson(
      bodyOf(['{"result":{"s":"a"}}\n{"result"', ':{"s":"b"}}\n', enc.slice(0, cut), enc.slice(cut), '{"result":{"s":"z"}}']),
      (r) => got.push(r),
    );
    expect(got).toEqual([{ s: 'a' }, { s: 'b' }, { s: 'é' }, { s: 'z' }]);
  });

  it('rejects with the error the server sent, after the messages before it', async () => {
    const got: unknown[] = [];
    await expect(
      readNdjson(bodyOf(['{"result":{"n":1}}\n{"error":{"code":14,"message":"coordinator stopping"}}\n']), (r) =>
        got.push(r),
      ),
    ).rejects.toThrow('coordinator stopping');
    expect(got).toEqual([{ n: 1 }]);
  });

  it('stops when aborted', async () => {
    const ac = new AbortController();
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"result":{"n":1}}\n'));
      },
    });
    const got: unknown[] = [];
    const done = readNdjson(body, (r) => {
      got.push(r);
      ac.abort();
    }, ac.signal);
    await expect(done).rejects.toThrow();
    expect(got).toEqual([{ n: 1 }]);
  });
});
