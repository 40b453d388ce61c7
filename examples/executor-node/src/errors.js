'use strict';

// How handler failures become StepFailure messages. The coordinator only
// cares about three things: is it permanent, did the handler ask for a
// backoff, and what kind of error was it (error_class, for people and
// dashboards). Everything else is the message.

/**
 * Error classes the executor itself reports in StepFailure.error_class. They
 * are the same strings the Go SDK uses, so dashboards group failures the
 * same way whichever language ran the step.
 */
const ErrorClass = Object.freeze({
  /** The step names a handler this executor does not host. Permanent. */
  UNKNOWN_HANDLER: 'UnknownHandler',
  /** The coordinator cancelled the attempt, or the executor shut down. */
  CANCELLED: 'Cancelled',
  /** The step's deadline passed before the handler finished. */
  DEADLINE_EXCEEDED: 'DeadlineExceeded',
  /** More steps arrived than the capacity reported in Describe. Retryable. */
  OVER_CAPACITY: 'ExecutorOverCapacity',
  /** The executor is stopping and takes no new steps. Retryable. */
  SHUTTING_DOWN: 'ShuttingDown',
  /** The handler's value cannot be encoded as JSON. Permanent. */
  INVALID_RESULT: 'InvalidResult',
  /** The handler's results exceed maxResultBytes. Permanent. */
  RESULT_TOO_LARGE: 'ResultTooLarge',
  /** The step's config, context or a parent's results are not JSON. Permanent. */
  INVALID_REQUEST: 'InvalidRequest',
});

/**
 * PermanentError tells the coordinator that retrying cannot help (bad input,
 * a refused payment): the step fails for good instead of being retried.
 */
class PermanentError extends Error {
  /**
   * @param {string} message for people
   * @param {{errorClass?: string, cause?: unknown}} [options]
   */
  constructor(message, { errorClass, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'PermanentError';
    this.permanent = true;
    if (errorClass) this.errorClass = errorClass;
  }
}

/**
 * RetryableError is a failure worth retrying. backoffMs, when given, is the
 * wait the handler asks for (e.g. from a Retry-After header); the coordinator
 * uses it instead of the step's backoff policy. Any other thrown error is
 * retryable too; this class exists to carry the backoff and the class.
 */
class RetryableError extends Error {
  /**
   * @param {string} message for people
   * @param {{backoffMs?: number, errorClass?: string, cause?: unknown}} [options]
   */
  constructor(message, { backoffMs, errorClass, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'RetryableError';
    if (Number.isFinite(backoffMs) && backoffMs > 0) this.backoffMs = backoffMs;
    if (errorClass) this.errorClass = errorClass;
  }
}

/**
 * StepAbortedError is the reason of a handler's AbortSignal, so a handler
 * that rethrows signal.reason (signal.throwIfAborted()) reports why it
 * stopped. kind is 'cancel' (the coordinator sent CancelStep), 'shutdown'
 * or 'deadline'.
 */
class StepAbortedError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'StepAbortedError';
    this.kind = kind;
    this.errorClass = kind === 'deadline' ? ErrorClass.DEADLINE_EXCEEDED : ErrorClass.CANCELLED;
  }
}

// Bounds the walk down a cause chain, which could be cyclic.
const MAX_CAUSE_DEPTH = 100;

/**
 * failureOf turns whatever a handler threw into a StepFailure (wire shape).
 * Markers are read from the error and its cause chain, outermost first:
 * permanent anywhere makes it permanent; the first backoffMs and errorClass
 * found win. Without an explicit class, fallbackClass is used, else the
 * error's name (TypeError, ...). Handlers may mark their own error types by
 * setting the same properties (permanent, backoffMs, errorClass).
 */
function failureOf(err, fallbackClass = '') {
  let permanent = false;
  let backoffMs = 0;
  let errorClass = '';
  let e = err;
  for (let depth = 0; e !== null && typeof e === 'object' && depth <= MAX_CAUSE_DEPTH; depth++) {
    if (e.permanent === true) permanent = true;
    if (!backoffMs && Number.isFinite(e.backoffMs) && e.backoffMs > 0) backoffMs = e.backoffMs;
    if (!errorClass && typeof e.errorClass === 'string') errorClass = e.errorClass;
    e = e.cause;
  }
  const failure = {
    message: messageOf(err),
    error_class: errorClass || fallbackClass || nameOf(err),
    permanent,
  };
  if (backoffMs > 0) failure.backoff = durationFromMs(backoffMs);
  return failure;
}

/** messageOf is a readable message for any thrown value, never empty. */
function messageOf(err) {
  if (err instanceof Error) return err.message || err.name || 'Error';
  if (err === undefined || err === null) return `handler threw ${err}`;
  return String(err);
}

function nameOf(err) {
  if (err instanceof Error) return err.name || err.constructor?.name || 'Error';
  return 'Error';
}

/** durationFromMs builds a google.protobuf.Duration from milliseconds. */
function durationFromMs(ms) {
  const whole = Math.max(0, ms);
  const seconds = Math.floor(whole / 1000);
  const nanos = Math.min(999_999_999, Math.round((whole - seconds * 1000) * 1e6));
  return { seconds: String(seconds), nanos };
}

module.exports = {
  ErrorClass,
  PermanentError,
  RetryableError,
  StepAbortedError,
  failureOf,
  messageOf,
  durationFromMs,
};
