'use strict';

// The executor over real gRPC on 127.0.0.1: a test client plays the
// coordinator's side of the Execute stream.

const test = require('node:test');
const assert = require('node:assert/strict');

const { Executor, PermanentError, RetryableError, createLogger, PROTOCOL_VERSION, SDK_VERSION } = require('../src');
const { startExecutor, openStream, startCoordinator, eventually, json, describeCall } = require('./harness');
const { HANDLERS, sleep } = require('../src/handlers');

const deadlineIn = (ms) => {
  const at = Date.now() + ms;
  return { seconds: String(Math.floor(at / 1000)), nanos: (at % 1000) * 1e6 };
};

test('Describe reports handlers, capacity and protocol', async (t) => {
  const { client, executor } = await startExecutor(t, { id: 'node-x', capacity: 3, handlers: { b: () => 1, a: () => 2 } });
  const d = await describeCall(client);
  assert.deepEqual(
    { ...d, capabilities: [...d.capabilities] },
    { executor_id: 'node-x', handlers: ['a', 'b'], capacity: 3, language: 'node', sdk_version: SDK_VERSION, protocol_version: PROTOCOL_VERSION, capabilities: ['cancel', 'heartbeat', 'progress', 'report'], coordinators: [], max_receive_bytes: String(64 << 20) },
  );
  assert.throws(() => executor.handle('c', () => 3), /already started/);
});

test('handle validates names and refuses duplicates', () => {
  const e = new Executor({ logger: createLogger({ level: 'off' }) });
  e.handle('x', () => 1);
  assert.throws(() => e.handle('x', () => 1), /already registered/);
  assert.throws(() => e.handle('', () => 1), TypeError);
  assert.throws(() => e.handle('y', 'not a function'), TypeError);
  assert.throws(() => new Executor({ capacity: 0 }), RangeError);
});

test('a heartbeat comes first, before any step, with the capacity share', async (t) => {
  const { client } = await startExecutor(t, { capacity: 4, heartbeatIntervalMs: 60_000 });
  const s = openStream(t, client);
  const first = await s.next();
  assert.equal(first.kind, 'heartbeat');
  assert.deepEqual(first.heartbeat.running, []);
  assert.equal(first.heartbeat.capacity, 4);
});

test('capacity is shared between coordinators; the others hear of it at once', async (t) => {
  const { client } = await startExecutor(t, { capacity: 5, heartbeatIntervalMs: 60_000 });
  const a = openStream(t, client, 'coord-a');
  assert.equal((await a.heartbeat()).capacity, 5);
  const b = openStream(t, client, 'coord-b');
  assert.equal((await b.heartbeat()).capacity, 2);
  assert.equal((await a.heartbeat()).capacity, 2, 'coord-a is told its smaller share without waiting an interval');
  // A second stream from the same coordinator does not shrink the shares.
  const b2 = openStream(t, client, 'coord-b');
  assert.equal((await b2.heartbeat()).capacity, 2);
});

test('each step gets exactly one result echoing its ids; parents cross as JSON', async (t) => {
  const { client } = await startExecutor(t, { id: 'node-2', handlers: HANDLERS });
  const s = openStream(t, client);
  const greet = { context: { text: 'hello' }, parents: {}, config: null };
  s.send({ task_id: 't1', step_id: 's1', step_name: 'shout', handler: 'node_upper', attempt: 3, context: { text: 'hello' }, parents: { greet } });
  const r = await s.result();
  assert.equal(r.task_id, 't1');
  assert.equal(r.step_id, 's1');
  assert.equal(r.attempt, 3);
  assert.equal(r.executor_id, 'node-2');
  assert.equal(r.outcome, 'success');
  assert.deepEqual(json(r.success.results), { upper: 'HELLO', parents: { greet } });
  await assert.rejects(s.result(200), /no matching message/, 'exactly one result');
});

test('unknown handler is a permanent failure; over capacity a retryable one', async (t) => {
  const { client } = await startExecutor(t, { id: 'node-c', capacity: 1, handlers: { wait: (ctx) => sleep(60_000, ctx.signal) } });
  const s = openStream(t, client);
  s.send({ task_id: 't', step_id: 'u', handler: 'nope' });
  const unknown = await s.result();
  assert.equal(unknown.failure.error_class, 'UnknownHandler');
  assert.equal(unknown.failure.permanent, true);
  assert.match(unknown.failure.message, /unknown handler "nope": executor node-c hosts wait/);

  s.send({ task_id: 't', step_id: 'a', handler: 'wait' });
  s.send({ task_id: 't', step_id: 'b', handler: 'wait' });
  const over = await s.result();
  assert.equal(over.step_id, 'b');
  assert.equal(over.failure.error_class, 'ExecutorOverCapacity');
  assert.equal(over.failure.permanent, false);
  s.cancel({ task_id: 't', step_id: 'a', attempt: 1, reason: 'done' });
  assert.equal((await s.result()).step_id, 'a');
});

test('heartbeats list running attempts; a cancelled handler still reports a failure', async (t) => {
  const { client } = await startExecutor(t, { heartbeatIntervalMs: 20, handlers: { wait: (ctx) => sleep(60_000, ctx.signal) } });
  const s = openStream(t, client);
  s.send({ task_id: 't', step_id: 's', handler: 'wait', attempt: 2 });
  const hb = await s.next((m) => m.kind === 'heartbeat' && m.heartbeat.running.length > 0);
  assert.deepEqual(hb.heartbeat.running, [{ task_id: 't', step_id: 's', attempt: 2 }]);
  assert.deepEqual(hb.heartbeat.running_step_ids, ['s']);
  s.cancel({ task_id: 't', step_id: 's', attempt: 1, reason: 'wrong attempt' });
  s.cancel({ task_id: 't', step_id: 's', attempt: 2, reason: 'operator' });
  const r = await s.result();
  assert.equal(r.attempt, 2);
  assert.equal(r.failure.error_class, 'Cancelled');
  assert.equal(r.failure.permanent, false);
  assert.match(r.failure.message, /^cancelled by coordinator: operator/);
});

test('the deadline aborts the handler; a passed deadline refuses the step', async (t) => {
  const { client } = await startExecutor(t, { handlers: { wait: (ctx) => sleep(60_000, ctx.signal) } });
  const s = openStream(t, client);
  s.send({ task_id: 't', step_id: 'late', handler: 'wait', deadline: deadlineIn(50) });
  const r = await s.result();
  assert.equal(r.failure.error_class, 'DeadlineExceeded');
  s.send({ task_id: 't', step_id: 'past', handler: 'wait', deadline: deadlineIn(-1000) });
  const past = await s.result();
  assert.equal(past.failure.error_class, 'DeadlineExceeded');
  assert.match(past.failure.message, /passed before the step started/);
});

test('handler errors keep their class, permanence and requested backoff', async (t) => {
  const { client } = await startExecutor(t, {
    handlers: {
      perm: () => { throw new PermanentError('bad input', { errorClass: 'BadInput' }); },
      retry: async () => { throw new RetryableError('busy', { backoffMs: 2500 }); },
      big: () => 'x'.repeat(100),
    },
    maxResultBytes: 50,
  });
  const s = openStream(t, client);
  s.send({ task_id: 't', step_id: 'p', handler: 'perm' });
  assert.deepEqual((await s.result()).failure, { message: 'bad input', error_class: 'BadInput', permanent: true, backoff: null });
  s.send({ task_id: 't', step_id: 'r', handler: 'retry' });
  assert.deepEqual((await s.result()).failure.backoff, { seconds: '2', nanos: 500_000_000 });
  s.send({ task_id: 't', step_id: 'b', handler: 'big' });
  const big = (await s.result()).failure;
  assert.equal(big.error_class, 'ResultTooLarge');
  assert.equal(big.permanent, true);
});

test('a result whose stream broke is delivered through ReportStepResult', async (t) => {
  const coord = await startCoordinator(t);
  let release;
  const gate = new Promise((r) => { release = r; });
  const { client, address } = await startExecutor(t, { id: 'node-r', coordinator: coord.address, heartbeatIntervalMs: 20, handlers: { gated: () => gate.then(() => ({ ok: 1 })) } });
  await eventually(() => coord.registrations.includes(address), undefined, 'registration');
  const s = openStream(t, client);
  s.send({ task_id: 't', step_id: 'g', handler: 'gated' });
  await s.next((m) => m.kind === 'heartbeat' && m.heartbeat.running.length === 1);
  s.call.cancel();
  // With the stream gone the executor registers again so the coordinator can dial it back.
  const before = coord.registrations.length;
  await eventually(() => coord.registrations.length > before, undefined, 're-registration');
  release();
  const reported = await eventually(() => coord.reports[0], undefined, 'report');
  assert.equal(reported.step_id, 'g');
  assert.equal(reported.executor_id, 'node-r');
  assert.deepEqual(json(reported.success.results), { ok: 1 });
});

test('without a coordinator to report to, a late result rides the next stream', async (t) => {
  let release;
  const gate = new Promise((r) => { release = r; });
  const lines = [];
  const logger = createLogger({ level: 'info', write: (line) => lines.push(line) });
  const { client } = await startExecutor(t, { logger, heartbeatIntervalMs: 20, handlers: { gated: () => gate.then(() => 'late') } });
  const first = openStream(t, client);
  first.send({ task_id: 't', step_id: 'g', handler: 'gated', attempt: 4 });
  await first.next((m) => m.kind === 'heartbeat' && m.heartbeat.running.length === 1);
  first.call.cancel();
  await eventually(() => lines.some((l) => l.includes('msg="execute stream broke"')), undefined, 'stream noticed broken');
  release();
  await eventually(() => lines.some((l) => l.includes('msg="step result waits for redelivery"')), undefined, 'result parked');
  const second = openStream(t, client);
  const msg = await second.next();
  assert.equal(msg.kind, 'step_result', 'pending results go before the first heartbeat');
  assert.equal(msg.step_result.attempt, 4);
  assert.equal(json(msg.step_result.success.results), 'late');
  assert.equal((await second.next()).kind, 'heartbeat');
});

test('shutdown waits for running handlers and delivers their results', async (t) => {
  let release;
  const gate = new Promise((r) => { release = r; });
  const { client, executor } = await startExecutor(t, { heartbeatIntervalMs: 20, handlers: { gated: () => gate.then(() => ({ done: true })) } });
  const s = openStream(t, client);
  s.send({ task_id: 't', step_id: 'x', handler: 'gated' });
  await s.next((m) => m.kind === 'heartbeat' && m.heartbeat.running.length === 1);
  const stopping = executor.shutdown();
  // Refused while draining: the coordinator should send it elsewhere.
  s.send({ task_id: 't', step_id: 'y', handler: 'gated' });
  const refused = await s.result();
  assert.equal(refused.step_id, 'y');
  assert.equal(refused.failure.error_class, 'ShuttingDown');
  assert.equal(refused.failure.permanent, false);
  release();
  const r = await s.result();
  assert.equal(r.step_id, 'x');
  assert.deepEqual(json(r.success.results), { done: true });
  await stopping;
  await assert.rejects(s.next((m) => m.kind !== 'heartbeat'), /stream ended/);
});
