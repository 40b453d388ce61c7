'use strict';

// The public API of this package: what a user copies to write their own
// Node executor.
//
//   const { Executor, PermanentError, RetryableError } = require('./src');
//   const executor = new Executor({ coordinator: '127.0.0.1:7070' });
//   executor.handle('charge_card', async (ctx) => {
//     const res = await fetch(url, { signal: ctx.signal });
//     if (res.status === 429) throw new RetryableError('rate limited', { backoffMs: 2000 });
//     if (!res.ok) throw new PermanentError(`refused: ${res.status}`);
//     return { charged: ctx.context.amount };
//   });
//   executor.listen('127.0.0.1:7300');
//   process.once('SIGTERM', () => executor.shutdown().then(() => process.exit(0)));

const { Executor, SDK_VERSION, PROTOCOL_VERSION, CAPABILITIES, DEFAULTS } = require('./executor');
const { PermanentError, RetryableError, StepAbortedError, ErrorClass } = require('./errors');
const { createLogger } = require('./log');
const { registerExamples } = require('./handlers');
const { registerConformance } = require('./conformance');

module.exports = {
  Executor,
  PermanentError,
  RetryableError,
  StepAbortedError,
  ErrorClass,
  createLogger,
  registerExamples,
  registerConformance,
  SDK_VERSION,
  PROTOCOL_VERSION,
  CAPABILITIES,
  DEFAULTS,
};
