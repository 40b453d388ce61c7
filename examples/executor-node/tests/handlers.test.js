'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');

const { HANDLERS, sleep } = require('../src/handlers');
const { failureOf, StepAbortedError } = require('../src/errors');

const { node_upper: upper, node_sum: sum, node_flaky: flaky, node_sleep: nap } = HANDLERS;

function ctx(fields = {}) {
  return { attempt: 1, config: {}, context: {}, parents: {}, signal: new AbortController().signal, ...fields };
}

test('node_upper upper-cases context.text and passes parents through', async () => {
  const parents = { greet: { context: { text: 'hello' }, parents: {} } };
  assert.deepEqual(await upper(ctx({ context: { text: 'hello wörld' }, parents })), { upper: 'HELLO WÖRLD', parents });
});

test('node_upper fails permanently without a string context.text', async () => {
  await assert.rejects(upper(ctx({ context: { text: 7 } })), (err) => {
    assert.deepEqual(failureOf(err), { message: 'node_upper: context.text must be a string, got a number', error_class: 'InvalidContext', permanent: true });
    return true;
  });
});

test('node_sum adds every number at any depth of every parent, ignoring strings and booleans', async () => {
  const parents = {
    a: { attempt: 2 },
    b: { slept_ms: 5, nested: { list: [1, [2, { x: 3 }]], s: '100', yes: true, none: null } },
    c: 0.5,
    d: ['4'],
  };
  assert.deepEqual(await sum(ctx({ parents })), { sum: 13.5 });
  assert.deepEqual(await sum(ctx()), { sum: 0 });
});

test('node_flaky fails retryably up to fail_times, then succeeds', async () => {
  const config = { fail_times: 2, backoff_ms: 20 };
  for (const attempt of [1, 2]) {
    await assert.rejects(flaky(ctx({ attempt, config })), (err) => {
      const f = failureOf(err);
      assert.equal(f.error_class, 'FlakyFailure');
      assert.equal(f.permanent, false);
      assert.deepEqual(f.backoff, { seconds: '0', nanos: 20_000_000 });
      assert.match(f.message, new RegExp(`attempt ${attempt} fails on purpose`));
      return true;
    });
  }
  assert.deepEqual(await flaky(ctx({ attempt: 3, config })), { attempt: 3 });
  assert.deepEqual(await flaky(ctx()), { attempt: 1 }, 'fail_times defaults to 0');
});

test('node_flaky fails permanently when asked, and on bad config', async () => {
  await assert.rejects(flaky(ctx({ config: { fail_times: 5, permanent: true } })), (err) => failureOf(err).permanent === true);
  for (const config of [{ fail_times: 1.5 }, { fail_times: -1 }, { fail_times: '1' }, { permanent: 'yes' }]) {
    await assert.rejects(flaky(ctx({ config })), (err) => {
      const f = failureOf(err);
      return f.error_class === 'InvalidConfig' && f.permanent;
    }, JSON.stringify(config));
  }
});

test('node_sleep sleeps config.ms and stops early on abort with the reason as cause', async () => {
  assert.deepEqual(await nap(ctx({ config: { ms: 5 } })), { slept_ms: 5 });
  const controller = new AbortController();
  const running = nap(ctx({ config: { ms: 60_000 }, signal: controller.signal }));
  controller.abort(new StepAbortedError('cancel', 'cancelled by coordinator: test'));
  await assert.rejects(running, (err) => {
    assert.match(err.message, /^node_sleep: stopped after \d+ms of 60000ms: cancelled by coordinator: test$/);
    assert.equal(failureOf(err).error_class, 'Cancelled');
    return true;
  });
});

test('sleep rejects at once on an already aborted signal', async () => {
  const controller = new AbortController();
  controller.abort(new Error('gone'));
  await assert.rejects(sleep(60_000, controller.signal), /gone/);
});
