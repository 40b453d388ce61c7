'use strict';

// The conformance test handlers: conformance.echo, conformance.sleep and
// conformance.fail, as fixed by docs/conformance.md. `tasker
// executor-check` runs them to check that this executor speaks the
// protocol. They are registered only when asked: --conformance, or
// TASKER_CONFORMANCE=1.

const { PermanentError } = require('./errors');
const { sleep } = require('./handlers');

/** Names of the conformance handlers, as the contract fixes them. */
const NAMES = Object.freeze({ ECHO: 'conformance.echo', SLEEP: 'conformance.sleep', FAIL: 'conformance.fail' });

/** Error class of a step whose parameters do not parse; permanent. */
const INVALID_PARAMS = 'InvalidParams';

/**
 * paramsOf reads the parameters from the step's config, or from the task
 * context when the step has no config. This executor hands handlers {} for
 * a config that was not sent, so an empty object counts as none.
 */
function paramsOf(ctx) {
  const config = ctx.config;
  if (isObject(config) && Object.keys(config).length > 0) return config;
  return isObject(ctx.context) ? ctx.context : {};
}

/** conformance.echo succeeds at once with everything the step carried, as the handler sees it. */
async function echo(ctx) {
  const params = paramsOf(ctx);
  const pad = number(params, 'pad');
  const out = {
    task_id: ctx.taskId,
    step_id: ctx.stepId,
    step_name: ctx.stepName,
    handler: ctx.handler,
    attempt: ctx.attempt,
    idempotency_key: ctx.idempotencyKey,
    namespace: ctx.namespace,
    template_name: ctx.templateName,
    template_version: ctx.templateVersion,
    context: ctx.context ?? null,
    config: ctx.config ?? null,
    parent_results: ctx.parents,
    trace_context: { ...ctx.traceContext },
  };
  if (pad > 0) out.pad = 'x'.repeat(pad);
  return out;
}

/**
 * conformance.sleep waits params.ms milliseconds, or until the attempt is
 * aborted (CancelStep, deadline, shutdown): the executor then reports the
 * failure as Cancelled or DeadlineExceeded. Its result carries the wall
 * clock at both ends in nanoseconds, written as JSON text so the integers
 * stay exact (a JS number cannot hold them).
 */
async function sleepFor(ctx) {
  const ms = number(paramsOf(ctx), 'ms');
  const started = nowNanos();
  try {
    await sleep(ms, ctx.signal);
  } catch (reason) {
    throw new Error(`conformance.sleep: stopped after ${Number((nowNanos() - started) / 1_000_000n)}ms of ${ms}ms: ${reason?.message ?? reason}`, { cause: reason });
  }
  return Buffer.from(`{"slept_ms":${JSON.stringify(ms)},"started_unix_nano":${started},"ended_unix_nano":${nowNanos()}}`);
}

/** conformance.fail always fails with exactly the message, class, permanence and backoff asked for. */
async function fail(ctx) {
  const params = paramsOf(ctx);
  const message = string(params, 'message', 'conformance failure');
  const err = new Error(message);
  err.name = 'ConformanceFailure';
  err.errorClass = string(params, 'class', 'ConformanceError');
  err.permanent = bool(params, 'permanent');
  const backoffMs = number(params, 'backoff_ms');
  if (backoffMs > 0) err.backoffMs = backoffMs;
  throw err;
}

function nowNanos() {
  return BigInt(Date.now()) * 1_000_000n;
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function number(params, name) {
  const v = params[name];
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new PermanentError(`${name}: want a non-negative number, got ${JSON.stringify(v)}`, { errorClass: INVALID_PARAMS });
  }
  return v;
}

function string(params, name, fallback) {
  const v = params[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string') throw new PermanentError(`${name}: want a string, got ${JSON.stringify(v)}`, { errorClass: INVALID_PARAMS });
  return v;
}

function bool(params, name) {
  const v = params[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new PermanentError(`${name}: want true or false, got ${JSON.stringify(v)}`, { errorClass: INVALID_PARAMS });
  return v;
}

/** CONFORMANCE_HANDLERS maps each conformance handler's name to its function. */
const CONFORMANCE_HANDLERS = Object.freeze({
  [NAMES.ECHO]: echo,
  [NAMES.SLEEP]: sleepFor,
  [NAMES.FAIL]: fail,
});

/** registerConformance adds the conformance handlers to executor. */
function registerConformance(executor) {
  for (const [name, fn] of Object.entries(CONFORMANCE_HANDLERS)) executor.handle(name, fn);
  return executor;
}

module.exports = { NAMES, CONFORMANCE_HANDLERS, registerConformance };
