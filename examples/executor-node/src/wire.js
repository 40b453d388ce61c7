'use strict';

// Conversions between the proto's bytes/Timestamp fields and what handlers
// see. JSON travels as UTF-8 bytes in the proto (handler_config, context,
// parent_results, results): the coordinator stores and forwards them
// untouched, so every language agrees on the exact text.

const { PermanentError, ErrorClass } = require('./errors');

/**
 * decodeJSON parses a JSON bytes field. Empty bytes mean "not sent" and give
 * undefined. Invalid JSON is a permanent failure: sending the same bytes
 * again cannot fix it.
 */
function decodeJSON(bytes, field) {
  if (!bytes || bytes.length === 0) return undefined;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PermanentError(`${field} is not valid JSON: ${err.message}`, {
      errorClass: ErrorClass.INVALID_REQUEST,
      cause: err,
    });
  }
}

/**
 * encodeResults turns a handler's return value into the results bytes:
 * undefined (a handler that returns nothing) becomes {}, a Buffer or
 * Uint8Array is taken as JSON text and checked, anything else goes through
 * JSON.stringify. It throws a permanent InvalidResult error for values JSON
 * cannot represent (functions, symbols, BigInt, cycles): the same code would
 * return the same value on a retry.
 */
function encodeResults(value) {
  if (value === undefined) return Buffer.from('{}');
  if (value instanceof Uint8Array) {
    const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    if (buf.length === 0) return Buffer.from('{}');
    try {
      JSON.parse(buf.toString('utf8'));
    } catch (err) {
      throw invalidResult(`results bytes are not valid JSON: ${err.message}`, err);
    }
    return buf;
  }
  let text;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw invalidResult(`results cannot be encoded as JSON: ${err.message}`, err);
  }
  if (text === undefined) {
    throw invalidResult(`results of type ${typeof value} cannot be encoded as JSON`);
  }
  return Buffer.from(text, 'utf8');
}

function invalidResult(message, cause) {
  return new PermanentError(message, { errorClass: ErrorClass.INVALID_RESULT, cause });
}

/** timestampToMs converts a google.protobuf.Timestamp (seconds as a string) to epoch ms, or null when unset. */
function timestampToMs(ts) {
  if (!ts) return null;
  return Number(ts.seconds) * 1000 + Math.floor((ts.nanos || 0) / 1e6);
}

/**
 * newStepContext builds what a handler receives for one attempt. config and
 * context default to {} when the coordinator sent none, since templates and
 * tasks describe both as JSON objects; parents maps each parent step's name
 * to its parsed results. It throws a PermanentError when any of them is not
 * JSON.
 */
function newStepContext(step, { signal, progress }) {
  const parents = {};
  for (const name of Object.keys(step.parent_results || {}).sort()) {
    const parsed = decodeJSON(step.parent_results[name], `parent_results[${JSON.stringify(name)}]`);
    parents[name] = parsed === undefined ? {} : parsed;
  }
  const deadlineMs = timestampToMs(step.deadline);
  return Object.freeze({
    taskId: step.task_id,
    stepId: step.step_id,
    stepName: step.step_name,
    handler: step.handler,
    attempt: step.attempt,
    deadline: deadlineMs === null ? null : new Date(deadlineMs),
    namespace: step.namespace,
    templateName: step.template_name,
    templateVersion: step.template_version,
    // The same for every attempt of one run of the step, new after a rerun:
    // for the idempotency keys of the services a handler calls. '' from a
    // coordinator older than the field.
    idempotencyKey: step.idempotency_key || '',
    // The coordinator's W3C trace context for the attempt ("traceparent",
    // "tracestate"): pass it on in the handler's outgoing calls so its
    // work joins the task's trace.
    traceContext: Object.freeze({ ...(step.trace_context || {}) }),
    // Set for an instance of a for_each step: its list element (parsed),
    // its index and the list's length; null for other steps.
    item: step.for_each
      ? Object.freeze({
          index: step.for_each.index,
          count: step.for_each.count,
          value: decodeJSON(step.for_each.item, 'for_each.item') ?? null,
        })
      : null,
    config: decodeJSON(step.handler_config, 'handler_config') ?? {},
    context: decodeJSON(step.context, 'context') ?? {},
    parents: Object.freeze(parents),
    signal,
    progress,
  });
}

module.exports = { decodeJSON, encodeResults, timestampToMs, newStepContext };
