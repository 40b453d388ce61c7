'use strict';

// The conformance handlers over real gRPC: what `tasker executor-check`
// relies on (docs/conformance.md). The kit itself runs against this
// executor in CI.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');

const { CONFORMANCE_HANDLERS, NAMES } = require('../src/conformance');
const { startExecutor, openStream, json, describeCall, eventually } = require('./harness');

test('conformance.echo returns everything the step carried, trace context included', async (t) => {
  const { client } = await startExecutor(t, { id: 'node-conf', handlers: CONFORMANCE_HANDLERS });
  const s = openStream(t, client);
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  s.send({
    task_id: 't1', step_id: 's1', step_name: 'check', handler: NAMES.ECHO, attempt: 3, idempotency_key: 't1/s1/0',
    namespace: 'conformance', template_name: 'executor_check', template_version: '1.0.0',
    config: { pad: 5 }, context: { customer: 'ü-42' }, parents: { charge: { cents: 1250 }, skipped: null },
    trace_context: { traceparent, tracestate: 'k=v' },
  });
  const r = await s.result();
  assert.equal(r.attempt, 3);
  assert.equal(r.executor_id, 'node-conf');
  assert.deepEqual(json(r.success.results), {
    task_id: 't1', step_id: 's1', step_name: 'check', handler: NAMES.ECHO, attempt: 3, idempotency_key: 't1/s1/0',
    namespace: 'conformance', template_name: 'executor_check', template_version: '1.0.0',
    context: { customer: 'ü-42' }, config: { pad: 5 }, parent_results: { charge: { cents: 1250 }, skipped: null },
    trace_context: { traceparent, tracestate: 'k=v' }, pad: 'xxxxx',
  });
});

test('conformance.sleep reports its wall clock in exact nanoseconds, and stops on cancel', async (t) => {
  const { client } = await startExecutor(t, { handlers: CONFORMANCE_HANDLERS });
  const s = openStream(t, client);
  s.send({ task_id: 't', step_id: 'short', handler: NAMES.SLEEP, config: { ms: 20 } });
  const done = await s.result();
  const text = Buffer.from(done.success.results).toString('utf8');
  const [, started, ended] = text.match(/"started_unix_nano":(\d+),"ended_unix_nano":(\d+)/);
  assert.ok(BigInt(ended) - BigInt(started) >= 20_000_000n, text);
  assert.equal(json(done.success.results).slept_ms, 20);

  s.send({ task_id: 't', step_id: 'long', handler: NAMES.SLEEP, config: { ms: 600_000 } });
  // Params come from the context when the step has no config.
  s.send({ task_id: 't', step_id: 'barrier', handler: NAMES.ECHO, context: { ms: 1 } });
  await s.result();
  s.cancel({ task_id: 't', step_id: 'long', attempt: 1, reason: 'test' });
  const cancelled = await s.result();
  assert.equal(cancelled.step_id, 'long');
  assert.equal(cancelled.failure.error_class, 'Cancelled');
  assert.equal(cancelled.failure.permanent, false);
});

test('conformance.fail fails with exactly the fields asked for, or the defaults', async (t) => {
  const { client } = await startExecutor(t, { handlers: CONFORMANCE_HANDLERS });
  const s = openStream(t, client);
  s.send({ task_id: 't', step_id: 'a', handler: NAMES.FAIL, config: { message: 'declined', class: 'CardDeclined', permanent: true } });
  s.send({ task_id: 't', step_id: 'b', handler: NAMES.FAIL, config: { message: 'slow down', class: 'RateLimited', backoff_ms: 1500 } });
  s.send({ task_id: 't', step_id: 'c', handler: NAMES.FAIL, context: { class: 'FromContext' } });
  const byStep = {};
  for (let i = 0; i < 3; i++) {
    const r = await s.result();
    byStep[r.step_id] = r.failure;
  }
  assert.deepEqual(byStep.a, { message: 'declined', error_class: 'CardDeclined', permanent: true, backoff: null });
  assert.deepEqual(byStep.b, { message: 'slow down', error_class: 'RateLimited', permanent: false, backoff: { seconds: '1', nanos: 500_000_000 } });
  assert.deepEqual(byStep.c, { message: 'conformance failure', error_class: 'FromContext', permanent: false, backoff: null });
});

test('main.js hosts the conformance handlers only when asked', async (t) => {
  const run = async (args, env) => {
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'src', 'main.js'), '--listen', '127.0.0.1:0', '--coordinator', '', ...args],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    t.after(() => child.kill('SIGKILL'));
    let log = '';
    child.stderr.on('data', (b) => { log += b; });
    const line = await eventually(() => log.split('\n').find((l) => l.includes('executor serving')), 10_000, 'executor serving log line');
    child.kill('SIGTERM');
    return line.match(/ handlers=(\S+)/)[1].split(',');
  };
  assert.ok(!(await run([], {})).includes(NAMES.ECHO));
  assert.ok((await run(['--conformance'], {})).includes(NAMES.ECHO));
  assert.deepEqual((await run([], { TASKER_CONFORMANCE: '1' })).filter((h) => h.startsWith('conformance.')), [NAMES.ECHO, NAMES.FAIL, NAMES.SLEEP]);
});
