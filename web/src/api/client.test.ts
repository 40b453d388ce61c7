import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, api, errorMessage, onUnauthorized, toQuery } from './client';

afterEach(() => vi.unstubAllGlobals());

describe('toQuery', () => {
  it('drops unset values and repeats arrays', () => {
    expect(toQuery({ a: 'x', b: undefined, c: '', d: false, e: true, n: 0, k: ['EVENT_KIND_TASK', 'EVENT_KIND_STEP'] })).toBe(
      '?a=x&e=true&n=0&k=EVENT_KIND_TASK&k=EVENT_KIND_STEP',
    );
    expect(toQuery({})).toBe('');
  });
});

function stubFetch(status: number, body: string, contentType = 'application/json') {
  const f = vi.fn(async () => new Response(body, { status, headers: { 'Content-Type': contentType } }));
  vi.stubGlobal('fetch', f);
  return f;
}

describe('calls', () => {
  it("turns a refusal into the coordinator's message", async () => {
    stubFetch(400, '{"code":9,"message":"task t1 is complete: only an errored task can be retried","details":[]}');
    const err = await api.retryTask('t1').catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(400);
    expect(errorMessage(err)).toBe('FailedPrecondition: task t1 is complete: only an errored task can be retried');
  });

  it('lists tasks with context matches, each its own escaped parameter', async () => {
    const f = stubFetch(200, '{"tasks":[]}');
    await api.listTasks({ namespace: 'demo', contextEquals: ['order_id=A-1&x', 'amount="5"'] });
    const [url] = f.mock.calls[0] as unknown as [string];
    expect(url).toBe('/api/v1/tasks?namespace=demo&contextEquals=order_id%3DA-1%26x&contextEquals=amount%3D%225%22');
  });

  it('reads a plain-text refusal, and tells listeners about a 401', async () => {
    stubFetch(401, 'Unauthorized: missing bearer token\n', 'text/plain');
    const seen: string[] = [];
    const off = onUnauthorized((e) => seen.push(e.message));
    const err = await api.listExecutors().catch((e) => e);
    off();
    expect(errorMessage(err)).toBe('HTTP 401: Unauthorized: missing bearer token');
    expect(seen).toEqual(['Unauthorized: missing bearer token']);
  });

  it('sends JSON bodies to the right paths', async () => {
    const f = stubFetch(200, '{"task":{"id":"t/1"}}');
    await api.resolveStep('t/1', 'step one', 'by hand', { ok: true });
    const [url, init] = f.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/v1/tasks/t%2F1/steps/step%20one:resolve');
    expect(init.method).toBe('POST');
    expect(JSON.parse(init.body as string)).toEqual({ reason: 'by hand', results: { ok: true } });

    const g = stubFetch(200, '{"task":{"id":"t/1"}}');
    await api.rerunStep('t/1', 'charge[3]', 'refund issued');
    const [rerunURL, rerunInit] = g.mock.calls[0] as unknown as [string, RequestInit];
    expect(rerunURL).toBe('/api/v1/tasks/t%2F1/steps/charge%5B3%5D:rerun');
    expect(JSON.parse(rerunInit.body as string)).toEqual({ reason: 'refund issued' });
  });

  it('streams NDJSON', async () => {
    stubFetch(200, '{"result":{"transition":{"seq":"3"},"taskState":"STATE_IN_PROGRESS"}}\n{"result":{"transition":{"seq":"4"}}}\n');
    const got: unknown[] = [];
    let opened = false;
    await api.watchTask('t1', 2, (m) => got.push(m.transition?.seq), undefined, () => (opened = true));
    expect(got).toEqual(['3', '4']);
    expect(opened).toBe(true);
  });
});
