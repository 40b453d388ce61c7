'use strict';

// Test harness: a real executor on 127.0.0.1, a real gRPC client playing
// the coordinator's side of the Execute stream, and a stand-in coordinator
// service for RegisterExecutor and ReportStepResult. Nothing here mocks the
// executor itself.

const grpc = require('@grpc/grpc-js');
const { Executor } = require('../src/executor');
const { createLogger } = require('../src/log');
const { loadProtos } = require('../src/proto');

const protos = loadProtos();
const quiet = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'off' });
const WAIT_MS = 10_000;

/** startExecutor serves an executor with handlers on a free port; it is shut down after the test. */
async function startExecutor(t, { handlers = {}, ...config } = {}) {
  const executor = new Executor({ logger: quiet, ...config });
  for (const [name, fn] of Object.entries(handlers)) executor.handle(name, fn);
  const address = await executor.listen('127.0.0.1:0');
  const client = new protos.ExecutorClient(address, grpc.credentials.createInsecure());
  t.after(async () => {
    client.close();
    await executor.shutdown();
  });
  return { executor, address, client };
}

/**
 * openStream opens an Execute stream as a coordinator would and buffers
 * what the executor sends, so tests can wait for the next message they
 * care about.
 */
function openStream(t, client, coordinatorId = 'test-coordinator') {
  const md = new grpc.Metadata();
  md.set('tasker-coordinator-id', coordinatorId);
  const call = client.Execute(md);
  const inbox = [];
  const waiters = [];
  let ended = null;
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  call.on('data', (msg) => {
    inbox.push(msg);
    notify();
  });
  call.on('error', (err) => {
    ended = err;
    notify();
  });
  call.on('end', () => {
    ended ??= new Error('stream ended');
    notify();
    // Like grpc-go, let go of our half of a stream the server has finished,
    // so the executor's graceful stop need not wait for it.
    call.cancel();
  });
  t.after(() => call.cancel());

  /** next resolves to (and removes) the first unread message for which keep returns true; others stay unread. */
  const next = (keep = () => true, ms = WAIT_MS) =>
    new Promise((resolve, reject) => {
      let done = false;
      const check = () => {
        if (done) return true;
        const i = inbox.findIndex(keep);
        if (i >= 0) {
          const [msg] = inbox.splice(i, 1);
          return finish(() => resolve(msg));
        }
        if (ended) return finish(() => reject(ended));
        return false;
      };
      const finish = (fn) => {
        done = true;
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(check), 1);
        fn();
        return true;
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`no matching message within ${ms}ms`))), ms);
      waiters.push(check);
      check();
    });

  return {
    call,
    next,
    result: (ms) => next((m) => m.kind === 'step_result', ms).then((m) => m.step_result),
    heartbeat: (ms) => next((m) => m.kind === 'heartbeat', ms).then((m) => m.heartbeat),
    send: (step) => {
      const { config, context, parents, ...rest } = step;
      call.write({ execute_step: { attempt: 1, ...rest, ...jsonFields({ config, context, parents }) } });
    },
    cancel: (c) => call.write({ cancel_step: c }),
  };
}

/** jsonFields encodes the JSON fields of a test step the way the coordinator does: UTF-8 bytes. */
function jsonFields(step) {
  const out = {};
  if (step.config !== undefined) out.handler_config = Buffer.from(JSON.stringify(step.config));
  if (step.context !== undefined) out.context = Buffer.from(JSON.stringify(step.context));
  if (step.parents !== undefined) {
    out.parent_results = Object.fromEntries(Object.entries(step.parents).map(([k, v]) => [k, Buffer.from(JSON.stringify(v))]));
  }
  return out;
}

/**
 * startCoordinator serves a stand-in CoordinatorService that records
 * registrations and reported results; the executor under test is real.
 */
async function startCoordinator(t, { applied = true } = {}) {
  const registrations = [];
  const reports = [];
  const server = new grpc.Server();
  server.addService(protos.coordinatorService, {
    RegisterExecutor: (call, cb) => {
      registrations.push(call.request.address);
      cb(null, { coordinator_id: 'test-coordinator', executor: { address: call.request.address } });
    },
    ReportStepResult: (call, cb) => {
      reports.push(call.request.result);
      cb(null, { applied });
    },
  });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.after(() => new Promise((resolve) => server.tryShutdown(resolve)));
  return { address: `127.0.0.1:${port}`, registrations, reports };
}

/** eventually polls check until it returns truthy, or fails after ms. */
async function eventually(check, ms = WAIT_MS, what = 'condition') {
  const due = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > due) throw new Error(`${what} not met within ${ms}ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** json decodes a result's bytes. */
function json(bytes) {
  return JSON.parse(Buffer.from(bytes).toString('utf8'));
}

/** describeCall calls Describe and resolves to the response. */
function describeCall(client) {
  return new Promise((resolve, reject) =>
    client.Describe({ coordinator_id: 'test-coordinator' }, (err, res) => (err ? reject(err) : resolve(res))));
}

module.exports = { startExecutor, openStream, startCoordinator, eventually, json, describeCall, protos };
