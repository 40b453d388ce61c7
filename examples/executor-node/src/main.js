#!/usr/bin/env node
'use strict';

// Command line entry: parse flags, host the example handlers, serve until
// SIGTERM or SIGINT, then shut down gracefully. Everything else lives in the
// modules next to this one.

const { parseArgs } = require('node:util');
const { Executor, DEFAULTS } = require('./executor');
const { createLogger } = require('./log');
const { registerExamples } = require('./handlers');
const { registerConformance } = require('./conformance');

const USAGE = `Usage: node src/main.js [flags]

Runs a Tasker executor hosting node_upper, node_sum, node_flaky and node_sleep.

  --listen HOST:PORT       address to serve on (default 127.0.0.1:7081)
  --coordinator HOST:PORT  coordinator to register with (default $TASKER_COORDINATOR
                           or 127.0.0.1:7070; empty: don't register); repeat it for
                           coordinators sharing one database
  --advertise HOST:PORT    address the coordinator should dial (default: the listen address)
  --id ID                  executor id (default: random)
  --capacity N             steps run at once (default ${DEFAULTS.capacity})
  --shutdown-timeout-ms N  on SIGTERM, wait this long for running steps (default ${DEFAULTS.shutdownTimeoutMs})
  --conformance            also host conformance.echo, conformance.sleep and conformance.fail,
                           the handlers 'tasker executor-check' runs (or TASKER_CONFORMANCE=1)
  --log-level LEVEL        debug, info, warn or error (default info)
  -h, --help               show this help
`;

function parseFlags(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      listen: { type: 'string', default: '127.0.0.1:7081' },
      coordinator: { type: 'string', multiple: true, default: [process.env.TASKER_COORDINATOR ?? '127.0.0.1:7070'] },
      advertise: { type: 'string', default: '' },
      id: { type: 'string' },
      capacity: { type: 'string', default: String(DEFAULTS.capacity) },
      'shutdown-timeout-ms': { type: 'string', default: String(DEFAULTS.shutdownTimeoutMs) },
      'log-level': { type: 'string', default: 'info' },
      conformance: { type: 'boolean', default: process.env.TASKER_CONFORMANCE === '1' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  return values;
}

/** wholeNumber parses a flag that must be a positive integer, naming the flag otherwise. */
function wholeNumber(flag, text) {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
    throw new Error(`--${flag} must be a positive whole number, got ${JSON.stringify(text)}`);
  }
  return n;
}

async function main() {
  let flags;
  let executor;
  let log;
  try {
    flags = parseFlags(process.argv.slice(2));
    if (flags.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    log = createLogger({ level: flags['log-level'] });
    executor = new Executor({
      id: flags.id,
      coordinators: flags.coordinator,
      advertise: flags.advertise,
      capacity: wholeNumber('capacity', flags.capacity),
      shutdownTimeoutMs: wholeNumber('shutdown-timeout-ms', flags['shutdown-timeout-ms']),
      logger: log,
    });
    registerExamples(executor);
    if (flags.conformance) registerConformance(executor);
  } catch (err) {
    process.stderr.write(`${err.message}\n\n${USAGE}`);
    return 2;
  }

  const stopped = new Promise((resolve) => {
    let signals = 0;
    const onSignal = (signal) => {
      signals++;
      if (signals > 1) {
        // A second signal means "now": skip the graceful wait.
        log.warn('second signal, exiting at once', { signal });
        process.exit(1);
      }
      log.info('signal received, shutting down', { signal });
      executor.shutdown().then(resolve);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });

  try {
    await executor.listen(flags.listen);
  } catch (err) {
    log.error('cannot serve', { listen: flags.listen, err: err.message });
    await executor.shutdown();
    return 1;
  }
  await stopped;
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`fatal: ${err.stack ?? err}\n`);
    process.exit(1);
  },
);
