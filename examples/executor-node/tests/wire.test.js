'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');

const { decodeJSON, encodeResults, timestampToMs, newStepContext } = require('../src/wire');
const { failureOf, PermanentError, RetryableError, StepAbortedError, ErrorClass } = require('../src/errors');

test('decodeJSON reads UTF-8 JSON bytes, empty as undefined', () => {
  assert.equal(decodeJSON(Buffer.alloc(0), 'context'), undefined);
  assert.deepEqual(decodeJSON(Buffer.from('{"text":"héllo ✓ 日本"}'), 'context'), { text: 'héllo ✓ 日本' });
  // A Uint8Array view into a larger buffer decodes only its own bytes.
  const big = Buffer.from('xx[1,2]yy');
  assert.deepEqual(decodeJSON(new Uint8Array(big.buffer, big.byteOffset + 2, 5), 'config'), [1, 2]);
});

test('decodeJSON fails permanently on invalid JSON, naming the field', () => {
  assert.throws(() => decodeJSON(Buffer.from('{nope'), 'handler_config'), (err) => {
    assert.ok(err instanceof PermanentError);
    assert.equal(err.errorClass, ErrorClass.INVALID_REQUEST);
    assert.match(err.message, /^handler_config is not valid JSON/);
    return true;
  });
});

test('encodeResults follows the handler result rules', () => {
  assert.equal(encodeResults(undefined).toString(), '{}');
  assert.equal(encodeResults(null).toString(), 'null');
  assert.equal(encodeResults({ upper: 'ÉTÉ', n: [1, 2.5] }).toString(), '{"upper":"ÉTÉ","n":[1,2.5]}');
  assert.equal(encodeResults(Buffer.from(' {"raw":true} ')).toString(), ' {"raw":true} ', 'JSON bytes pass through untouched');
  assert.equal(encodeResults(new Uint8Array(0)).toString(), '{}');
  // Round trip: what a Go handler reads is byte for byte what JSON.parse gives back.
  const value = { s: 'naïve \u2028 "q"', emoji: '🚀' };
  assert.deepEqual(JSON.parse(encodeResults(value).toString('utf8')), value);
});

test('encodeResults refuses values JSON cannot carry, permanently', () => {
  const cyclic = {};
  cyclic.self = cyclic;
  for (const bad of [Buffer.from('not json'), 10n, () => 1, Symbol('s'), cyclic]) {
    assert.throws(() => encodeResults(bad), (err) => {
      const f = failureOf(err);
      assert.equal(f.error_class, ErrorClass.INVALID_RESULT);
      assert.equal(f.permanent, true);
      return true;
    }, String(typeof bad));
  }
});

test('timestampToMs converts int64-as-string seconds and nanos', () => {
  assert.equal(timestampToMs(null), null);
  assert.equal(timestampToMs({ seconds: '1700000000', nanos: 123_999_999 }), 1_700_000_000_123);
});

test('newStepContext parses config, context and parents, with {} defaults', () => {
  const signal = new AbortController().signal;
  const ctx = newStepContext({
    task_id: 't1', step_id: 's1', step_name: 'shout', handler: 'node_upper', attempt: 2,
    deadline: { seconds: '1700000000', nanos: 0 },
    handler_config: Buffer.alloc(0),
    context: Buffer.from('{"text":"hello"}'),
    parent_results: { greet: Buffer.from('{"ok":true}'), empty: Buffer.alloc(0) },
    namespace: 'ns', template_name: 'tpl', template_version: '1.0.0',
    idempotency_key: 't1/s1/2',
  }, { signal, progress: () => {} });
  assert.equal(ctx.taskId, 't1');
  assert.equal(ctx.stepId, 's1');
  assert.equal(ctx.stepName, 'shout');
  assert.equal(ctx.attempt, 2);
  assert.deepEqual(ctx.config, {});
  assert.deepEqual(ctx.context, { text: 'hello' });
  assert.deepEqual(ctx.parents, { empty: {}, greet: { ok: true } });
  assert.equal(ctx.deadline.getTime(), 1_700_000_000_000);
  assert.equal(ctx.signal, signal);
  assert.equal(ctx.templateVersion, '1.0.0');
  assert.equal(ctx.idempotencyKey, 't1/s1/2');
  assert.equal(ctx.item, null);
  assert.ok(Object.isFrozen(ctx));
});

test('newStepContext gives a for_each instance its item', () => {
  const ctx = newStepContext({
    handler_config: Buffer.alloc(0), context: Buffer.alloc(0),
    for_each: { index: 3, count: 10, item: Buffer.from('{"sku":"a-1"}') },
  }, {});
  assert.deepEqual(ctx.item, { index: 3, count: 10, value: { sku: 'a-1' } });
});

test('newStepContext names the parent whose results are not JSON', () => {
  assert.throws(
    () => newStepContext({ parent_results: { 'bad step': Buffer.from('{') }, handler_config: Buffer.alloc(0), context: Buffer.alloc(0) }, {}),
    /parent_results\["bad step"\] is not valid JSON/,
  );
});

test('failureOf maps thrown values to StepFailure', () => {
  assert.deepEqual(failureOf(new PermanentError('card refused', { errorClass: 'CardDeclined' })),
    { message: 'card refused', error_class: 'CardDeclined', permanent: true });
  assert.deepEqual(failureOf(new RetryableError('rate limited', { backoffMs: 1500 })),
    { message: 'rate limited', error_class: 'RetryableError', permanent: false, backoff: { seconds: '1', nanos: 500_000_000 } });
  assert.deepEqual(failureOf(new TypeError('x is undefined')),
    { message: 'x is undefined', error_class: 'TypeError', permanent: false });
  assert.deepEqual(failureOf('plain string'), { message: 'plain string', error_class: 'Error', permanent: false });
  assert.deepEqual(failureOf(undefined, 'Fallback'), { message: 'handler threw undefined', error_class: 'Fallback', permanent: false });
});

test('failureOf reads markers down the cause chain; the outermost class wins', () => {
  const inner = new PermanentError('db constraint', { errorClass: 'Constraint' });
  const outer = new Error('save order', { cause: inner });
  assert.deepEqual(failureOf(outer), { message: 'save order', error_class: 'Constraint', permanent: true });
  // User error types mark themselves with the same properties.
  class Throttled extends Error {
    backoffMs = 250;
    errorClass = 'Throttled';
  }
  const f = failureOf(new Throttled('slow down'));
  assert.equal(f.error_class, 'Throttled');
  assert.deepEqual(f.backoff, { seconds: '0', nanos: 250_000_000 });
  // An abort reason rethrown by a handler says why it stopped.
  assert.equal(failureOf(new StepAbortedError('deadline', 'late')).error_class, ErrorClass.DEADLINE_EXCEEDED);
  assert.equal(failureOf(new StepAbortedError('cancel', 'stop')).error_class, ErrorClass.CANCELLED);
});
