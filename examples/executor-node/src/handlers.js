'use strict';

// Example handlers hosted by the Node executor. They double as the
// interoperability fixtures of the e2e test: node_upper and node_sum read
// results produced by Go handlers, and Go handlers read theirs. Names carry
// a node_ prefix so a template says plainly which language runs each step.

const { PermanentError, RetryableError } = require('./errors');
const { setLongTimeout } = require('./util');

/** Error class of failures caused by a step's config; permanent. */
const INVALID_CONFIG = 'InvalidConfig';
/** Error class of node_flaky's deliberate failures, as Go's flaky uses. */
const FLAKY_FAILURE = 'FlakyFailure';

/**
 * node_upper: {"upper": context.text upper-cased, "parents": {<name>: <results>}}.
 * A missing or non-string context.text is a permanent InvalidContext failure.
 */
async function nodeUpper(ctx) {
  const text = ctx.context.text;
  if (typeof text !== 'string') {
    throw new PermanentError(`node_upper: context.text must be a string, got ${kindOf(text)}`, { errorClass: 'InvalidContext' });
  }
  return { upper: text.toUpperCase(), parents: ctx.parents };
}

/**
 * node_sum: {"sum": N} where N adds up every JSON number in every parent's
 * results, at any depth (object values and array elements). Strings are
 * not parsed, even numeric ones; booleans and null count for nothing. No
 * parents, or no numbers, gives 0. Addition is IEEE double, as in JS.
 */
async function nodeSum(ctx) {
  let sum = 0;
  for (const results of Object.values(ctx.parents)) sum += sumNumbers(results);
  return { sum };
}

function sumNumbers(v) {
  if (typeof v === 'number') return v;
  if (Array.isArray(v)) return v.reduce((acc, x) => acc + sumNumbers(x), 0);
  if (v !== null && typeof v === 'object') return Object.values(v).reduce((acc, x) => acc + sumNumbers(x), 0);
  return 0;
}

/**
 * node_flaky fails while the attempt is at most config.fail_times (default
 * 0), then succeeds with {"attempt": N}: the handler for testing retries,
 * like Go's flaky. config.permanent makes its failures permanent and
 * config.backoff_ms asks the coordinator for that wait before the next
 * attempt. Its failures have class FlakyFailure.
 */
async function nodeFlaky(ctx) {
  const failTimes = numberField(ctx.config, 'fail_times', { whole: true });
  const permanent = boolField(ctx.config, 'permanent');
  const backoffMs = numberField(ctx.config, 'backoff_ms');
  if (ctx.attempt > failTimes) return { attempt: ctx.attempt };
  const message = `node_flaky: attempt ${ctx.attempt} fails on purpose (fail_times ${failTimes})`;
  if (permanent) throw new PermanentError(message, { errorClass: FLAKY_FAILURE });
  throw new RetryableError(message, { errorClass: FLAKY_FAILURE, backoffMs });
}

/**
 * node_sleep waits config.ms milliseconds (default 0) and succeeds with
 * {"slept_ms": N}. It stops early when the step is cancelled or its
 * deadline passes, failing with the abort reason as the cause (so the
 * failure's class is Cancelled or DeadlineExceeded).
 */
async function nodeSleep(ctx) {
  const ms = numberField(ctx.config, 'ms');
  const started = Date.now();
  try {
    await sleep(ms, ctx.signal);
  } catch (reason) {
    throw new Error(`node_sleep: stopped after ${Date.now() - started}ms of ${ms}ms: ${reason?.message ?? reason}`, { cause: reason });
  }
  return { slept_ms: ms };
}

/** sleep resolves after ms, or rejects with signal.reason once it aborts. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      cancel();
      reject(signal.reason);
    };
    const cancel = setLongTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function numberField(config, name, { whole = false } = {}) {
  const v = config[name];
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (whole && !Number.isInteger(v))) {
    const want = whole ? 'a whole number' : 'a number';
    throw new PermanentError(`config.${name} must be ${want} of at least 0, got ${JSON.stringify(v)}`, { errorClass: INVALID_CONFIG });
  }
  return v;
}

function boolField(config, name) {
  const v = config[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') {
    throw new PermanentError(`config.${name} must be true or false, got ${JSON.stringify(v)}`, { errorClass: INVALID_CONFIG });
  }
  return v;
}

function kindOf(v) {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

/** HANDLERS maps each example handler's name to its function. */
const HANDLERS = Object.freeze({
  node_upper: nodeUpper,
  node_sum: nodeSum,
  node_flaky: nodeFlaky,
  node_sleep: nodeSleep,
});

/** registerExamples adds every example handler to executor. */
function registerExamples(executor) {
  for (const [name, fn] of Object.entries(HANDLERS)) executor.handle(name, fn);
  return executor;
}

module.exports = { HANDLERS, registerExamples, sleep };
