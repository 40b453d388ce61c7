'use strict';

// A tiny structured logger. Lines look like Go's slog text handler
// (time=... level=INFO msg="..." key=value), so the logs of Go and Node
// executors read the same side by side and grep the same way.

const LEVELS = Object.freeze({ debug: -4, info: 0, warn: 4, error: 8, off: Infinity });

function formatValue(v) {
  if (v instanceof Error) v = v.message;
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return v.toString();
  return JSON.stringify(v) ?? String(v);
}

/**
 * createLogger returns {debug, info, warn, error, with}. Each method takes a
 * message and an object of fields; with(fields) returns a logger that adds
 * those fields to every line.
 */
function createLogger({ level = 'info', write = (line) => process.stderr.write(line), fields = {} } = {}) {
  if (!(level in LEVELS)) throw new Error(`log level must be one of ${Object.keys(LEVELS).join(', ')}, got ${JSON.stringify(level)}`);
  const min = LEVELS[level];
  const emit = (name, msg, extra) => {
    if (LEVELS[name] < min) return;
    let line = `time=${new Date().toISOString()} level=${name.toUpperCase()} msg=${formatValue(msg)}`;
    for (const [k, v] of Object.entries({ ...fields, ...extra })) line += ` ${k}=${formatValue(v)}`;
    write(line + '\n');
  };
  return {
    debug: (msg, extra) => emit('debug', msg, extra),
    info: (msg, extra) => emit('info', msg, extra),
    warn: (msg, extra) => emit('warn', msg, extra),
    error: (msg, extra) => emit('error', msg, extra),
    with: (more) => createLogger({ level, write, fields: { ...fields, ...more } }),
  };
}

module.exports = { createLogger, LEVELS };
