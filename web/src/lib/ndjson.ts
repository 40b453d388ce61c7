// Server streams over the REST gateway arrive as newline-delimited JSON:
// one object per line, {"result": {...}} for each message and
// {"error": {"code": …, "message": …}} if the stream fails. Chunks from the
// network split lines anywhere, so lines are put back together here.

/** StreamError is an error the server sent inside a stream. */
export class StreamError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = 'StreamError';
    this.code = code;
  }
}

/** NdjsonDecoder turns text chunks into the JSON values of complete lines. */
export class NdjsonDecoder {
  private buf = '';

  /** push adds a chunk and returns the values of the lines it completed. */
  push(chunk: string): unknown[] {
    this.buf += chunk;
    const out: unknown[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const v = parseLine(line);
      if (v !== undefined) out.push(v);
    }
    return out;
  }

  /** end returns the value of a last line that had no newline. */
  end(): unknown[] {
    const line = this.buf;
    this.buf = '';
    const v = parseLine(line);
    return v === undefined ? [] : [v];
  }
}

function parseLine(line: string): unknown {
  const text = line.trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new StreamError(0, `the stream sent a line that is not JSON: ${text.slice(0, 120)}`);
  }
}

/**
 * streamResult unwraps one stream item: the message for {"result": …},
 * a thrown StreamError for {"error": …}.
 */
export function streamResult<T>(item: unknown): T {
  if (item && typeof item === 'object') {
    const o = item as { result?: unknown; error?: { code?: number; message?: string } };
    if (o.error) throw new StreamError(o.error.code ?? 0, o.error.message || 'the stream failed');
    if ('result' in o) return o.result as T;
  }
  throw new StreamError(0, 'the stream sent an item with neither result nor error');
}

/**
 * readNdjson reads a response body to its end, calling onResult for each
 * streamed message in order. It returns when the server ends the stream
 * and rejects with a StreamError when the server reports one, or with an
 * AbortError when signal is aborted.
 */
export async function readNdjson<T>(
  body: ReadableStream<Uint8Array>,
  onResult: (r: T) => void,
  signal?: AbortSignal,
): Promise<void> {
  const reader = body.getReader();
  const text = new TextDecoder();
  const dec = new NdjsonDecoder();
  const onAbort = () => {
    void reader.cancel().catch(() => undefined);
  };
  signal?.addEventListener('abort', onAbort);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (signal?.aborted) throw new DOMException('aborted', 'AbortError');
      if (done) break;
      for (const item of dec.push(text.decode(value, { stream: true }))) onResult(streamResult<T>(item));
    }
    for (const item of dec.push(text.decode())) onResult(streamResult<T>(item));
    for (const item of dec.end()) onResult(streamResult<T>(item));
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
}
